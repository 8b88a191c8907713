"""MMLU: the task description (subject instruction) is the instruction segment; choices are letters."""

from .base import Segment
from .default import MultipleChoiceHook


class MmluHook(MultipleChoiceHook):
    families = ("mmlu",)

    def segments(self, task, doc, prompt):
        segs = super().segments(task, doc, prompt)
        if not any(s.label == "instruction" for s in segs):
            first = prompt.find("\n\n")
            if first > 0 and prompt.startswith("The following are multiple choice questions"):
                segs = [Segment("instruction", 0, first + 2)] + [
                    s if s.start >= first + 2 else Segment(s.label, first + 2, s.end) for s in segs if s.end > first + 2
                ]
        return segs


HOOK = MmluHook()
