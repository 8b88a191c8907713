"""Task hooks: small per-task-family adapters used by the harness loop.

A hook can give the gold continuation of a generate_until task, locate a better divergence than the first
differing token, propose contrast candidates, and label prompt segments whose relevance sums are recorded.
Hooks never decide correctness: that is the task's own definition in lm-eval.

Matching: the hook whose ``families`` has the longest prefix of the task name wins; otherwise the default for the
task's output type. Users add hooks from a folder (``--lrp_hooks_path DIR``): every ``*.py`` file there defining
``HOOK = MyHook()`` is loaded, and user hooks win over the built-in ones for the same prefix.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .base import Segment, TaskHook
from .default import GenerateUntilHook, MultipleChoiceHook

_BUILTIN = ("arc", "mmlu", "hellaswag", "gsm8k", "math", "humaneval", "mbpp")


def _builtin_hooks() -> list[TaskHook]:
    hooks = []
    for name in _BUILTIN:
        module = importlib.import_module(f"{__name__}.{name}")
        hooks.append(module.HOOK)
    return hooks


def load_hooks_from(path: str | Path) -> list[TaskHook]:
    """Load user hooks: every ``*.py`` in ``path`` that defines ``HOOK`` (a :class:`TaskHook`)."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"--lrp_hooks_path {folder} is not a folder of hook files (*.py defining HOOK)")
    hooks = []
    for file in sorted(folder.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"lm_eval_lrp_user_hooks.{file.stem}", file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        hook = getattr(module, "HOOK", None)
        if isinstance(hook, TaskHook):
            hooks.append(hook)
    return hooks


class HookRegistry:
    def __init__(self, extra: list[TaskHook] | None = None):
        self.user = list(extra or [])
        self.builtin = _builtin_hooks()
        self.defaults = {"multiple_choice": MultipleChoiceHook(), "generate_until": GenerateUntilHook()}

    def for_task(self, task_name: str, output_type: str) -> TaskHook:
        best, best_len = None, -1
        for group in (self.user, self.builtin):
            for hook in group:
                for prefix in hook.families:
                    if task_name.startswith(prefix) and len(prefix) > best_len:
                        best, best_len = hook, len(prefix)
            if best is not None:
                return best
        return self.defaults.get(output_type, self.defaults["generate_until"])


__all__ = ["HookRegistry", "Segment", "TaskHook", "load_hooks_from", "GenerateUntilHook", "MultipleChoiceHook"]
