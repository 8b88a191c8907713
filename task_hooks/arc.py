"""ARC (easy/challenge): multiple choice over answer texts; the defaults fit, the prompt is 'Question: ...\\nAnswer:'."""

from .default import MultipleChoiceHook


class ArcHook(MultipleChoiceHook):
    families = ("arc_easy", "arc_challenge", "arc_")


HOOK = ArcHook()
