"""MBPP: the gold continuation is the reference code (``code`` field), after the task's target delimiter."""

from .default import GenerateUntilHook


class MbppHook(GenerateUntilHook):
    families = ("mbpp",)

    def gold_continuation(self, task, doc, sample):
        code = doc.get("code") if isinstance(doc, dict) else None
        if not code:
            return super().gold_continuation(task, doc, sample)
        delimiter = getattr(task.config, "target_delimiter", "") or ""
        return f"{delimiter}{code}"


HOOK = MbppHook()
