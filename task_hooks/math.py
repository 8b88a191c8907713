"""MATH (hendrycks_math, minerva_math): the gold continuation is the worked solution of the dataset."""

from .default import GenerateUntilHook


class MathHook(GenerateUntilHook):
    families = ("hendrycks_math", "minerva_math", "math_")
    gold_field = "solution"


HOOK = MathHook()
