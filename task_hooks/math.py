"""MATH (hendrycks_math, minerva_math): the gold continuation is the worked solution of the dataset."""

from .default import GenerateUntilHook


class MathHook(GenerateUntilHook):
    families = ("hendrycks_math", "minerva_math", "math_")

    def gold_continuation(self, task, doc, sample):
        solution = doc.get("solution") if isinstance(doc, dict) else None
        if not solution:
            return super().gold_continuation(task, doc, sample)
        delimiter = getattr(task.config, "target_delimiter", " ") or ""
        return f"{delimiter}{solution}"


HOOK = MathHook()
