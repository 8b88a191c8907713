"""HumanEval: the prompt is the function signature + docstring; the gold is the canonical solution body."""

from .default import GenerateUntilHook


class HumanEvalHook(GenerateUntilHook):
    families = ("humaneval",)
    skip_whitespace = True  # a different indentation or blank line is formatting; explain the first content token
    gold_field = "canonical_solution"
    gold_delimiter = ""  # the prompt ends inside the function; the solution body follows directly

    def gold_continuation(self, task, doc, sample):
        return super().gold_continuation(task, doc, sample) if isinstance(doc, dict) and doc.get(self.gold_field) else None

    def segments(self, task, doc, prompt):
        from .base import Segment

        segs = []
        doc_start = prompt.find('"""')
        if doc_start < 0:
            doc_start = prompt.find("'''")
        if doc_start > 0:
            segs.append(Segment("signature", 0, doc_start))
            segs.append(Segment("docstring", doc_start, len(prompt)))
        return segs or super().segments(task, doc, prompt)


HOOK = HumanEvalHook()
