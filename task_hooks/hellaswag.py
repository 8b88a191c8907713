"""HellaSwag: the query is the preprocessed activity context; endings are long, so divergence is often late."""

from .default import MultipleChoiceHook


class HellaswagHook(MultipleChoiceHook):
    families = ("hellaswag",)


HOOK = HellaswagHook()
