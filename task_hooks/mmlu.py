"""MMLU: the subject line is the instruction segment (the segmenter knows it); choices are letters."""

from .default import MultipleChoiceHook


class MmluHook(MultipleChoiceHook):
    families = ("mmlu",)


HOOK = MmluHook()
