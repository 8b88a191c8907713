"""MBPP: the gold continuation is the reference code (``code`` field), after the task's target delimiter."""

from .default import GenerateUntilHook


class MbppHook(GenerateUntilHook):
    families = ("mbpp",)
    gold_field = "code"


HOOK = MbppHook()
