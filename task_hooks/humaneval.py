"""HumanEval: the prompt is the function signature + docstring; the gold is the canonical solution body."""

from .default import GenerateUntilHook


class HumanEvalHook(GenerateUntilHook):
    families = ("humaneval",)
    skip_whitespace = True  # a different indentation or blank line is formatting; explain the first content token
    gold_field = "canonical_solution"
    gold_delimiter = ""  # the prompt ends inside the function; the solution body follows directly

    def gold_continuation(self, task, doc, sample):
        return super().gold_continuation(task, doc, sample) if isinstance(doc, dict) and doc.get(self.gold_field) else None


HOOK = HumanEvalHook()
