"""MBPP: the gold continuation is the reference code (``code`` field), after the task's target delimiter."""

from .default import GenerateUntilHook


class MbppHook(GenerateUntilHook):
    families = ("mbpp",)
    skip_whitespace = True  # a different indentation or blank line is formatting; explain the first content token
    gold_field = "code"


HOOK = MbppHook()
