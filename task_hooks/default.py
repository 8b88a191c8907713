"""Defaults for any multiple-choice and any generate_until task."""

from .base import TaskHook


class MultipleChoiceHook(TaskHook):
    families = ()


class GenerateUntilHook(TaskHook):
    families = ()
