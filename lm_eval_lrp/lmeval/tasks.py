"""lm-eval's tasks and logged samples, seen through plain accessors (part of the seam: the only code that knows them).

:class:`TaskView` is what the rest of lm-eval-lrp (the harness loop, the task hooks) gets instead of an lm-eval task
object: its name, output type, settings and the three ``doc_to_*`` functions, plus the multiple-choice verdict
(which choice lm-eval's metric picked, which is gold) exactly as lm-eval's ``process_results`` decides them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .scoring import task_scorer
from .templates import compiled

_UNKNOWN = object()


@dataclass
class TaskView:
    name: str
    output_type: str | None
    higher_is_better: dict = field(default_factory=dict)
    target_delimiter: str = " "
    description: str = ""
    multiple_input: bool = False
    metrics: tuple[str, ...] = ()  # the task's metric names (from its config)
    filters: tuple[str, ...] = ()  # the task's filter names
    has_choices: bool = True  # the task defines choices (multiple choice, or a doc_to_choice in its config): an
    # integer target is then a choice's index
    constant_target: bool = False  # generate_until with one literal target for every doc (ifeval's 0): no gold
    _doc_to_text: Callable[[Any], Any] | None = None
    _doc_to_target: Callable[[Any], Any] | None = None
    _doc_to_choice: Callable[[Any], Any] | None = None
    _scorer: Callable[..., Callable[[str], bool]] | None = None
    #: the last document's choices (the verdict asks for them twice; lm-eval renders a Jinja template per call)
    _last_choices: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def config(self) -> "TaskView":
        """Hooks written against lm-eval's task objects read ``task.config.target_delimiter``: the same values."""
        return self

    def doc_to_text(self, doc):
        return self._doc_to_text(doc) if self._doc_to_text else None

    def doc_to_target(self, doc):
        return self._doc_to_target(doc) if self._doc_to_target else None

    def doc_to_choice(self, doc):
        """The doc's choices; None for a task without (never asks lm-eval, which logs an error for those). The last
        doc's choices are kept: the harness asks for them several times per failure."""
        if not (self._doc_to_choice and self.has_choices):
            return None
        if self._last_choices is not None and self._last_choices[0] is doc:
            return self._last_choices[1]
        choices = self._doc_to_choice(doc)
        self._last_choices = (doc, choices)
        return choices

    def scorer(self, doc, filter_name: str | None = None, metric: str | None = None) -> Callable[[str], bool] | None:
        """The task's own verdict on an output text for ``doc`` (its filters and ``process_results``): True = right."""
        return self._scorer(doc, filter_name, metric) if self._scorer else None

    # --- the multiple-choice verdict, as lm-eval's process_results decides it ---------------------------------

    def gold_indices(self, doc, n_choices: int, target=_UNKNOWN) -> list[int]:
        """The gold choice index(es); for multiple-input tasks (winogrande) lm-eval takes them from doc_to_text.
        ``target``: ``doc_to_target(doc)`` where already known (a logged sample's ``target``)."""
        if self.multiple_input:
            gold = self.doc_to_text(doc)
        else:
            gold = self.doc_to_target(doc) if target is _UNKNOWN else target
        choices = self.doc_to_choice(doc)
        golds = gold if isinstance(gold, list) else [gold]
        out = []
        for g in golds:
            if isinstance(g, str):
                g = choices.index(g) if g in choices else -1
            if isinstance(g, (int, np.integer)) and 0 <= int(g) < n_choices:
                out.append(int(g))
        return out

    def predicted_index(self, sample: dict, metric: str) -> int:
        """The choice lm-eval's metric picked: argmax log-likelihood (acc), per character (acc_norm) or per byte."""
        lls = np.array([float(r[0]) for r in sample["filtered_resps"]])
        choices = self.doc_to_choice(sample["doc"])
        n = len(choices) if not self.multiple_input else len(lls)
        lls = lls[:n]  # mutual-info tasks append unconditional requests
        if metric == "acc_norm" and not self.multiple_input:
            lls = lls / np.array([float(len(c)) for c in choices])
        elif metric == "acc_bytes" and not self.multiple_input:
            lls = lls / np.array([float(len(c.encode("utf-8"))) for c in choices])
        return int(np.argmax(lls))


def _config(task, name: str, default=None):
    getter = getattr(task, "get_config", None)
    value = getter(name) if callable(getter) else getattr(getattr(task, "config", None), name, None)
    return default if value is None else value


def task_view(name: str, task) -> TaskView:
    """The plain view of one lm-eval task object."""
    metric_list = _config(task, "metric_list", []) or []
    filters = _config(task, "filter_list", []) or []
    output_type = _config(task, "output_type") or getattr(task, "OUTPUT_TYPE", None)
    target = _config(task, "doc_to_target")
    return TaskView(
        name=name,
        output_type=output_type,
        has_choices=(output_type == "multiple_choice" or _config(task, "doc_to_choice") is not None
                     or getattr(task, "prompt", None) is not None),
        constant_target=output_type == "generate_until" and isinstance(target, int) and not isinstance(target, bool),
        higher_is_better=dict(task.higher_is_better()) if hasattr(task, "higher_is_better") else {},
        target_delimiter=_config(task, "target_delimiter", " "),
        description=_config(task, "description", "") or "",
        multiple_input=bool(getattr(task, "multiple_input", False)),
        metrics=tuple(m.get("metric") for m in metric_list if isinstance(m, dict) and isinstance(m.get("metric"), str)),
        filters=tuple(f.get("name") for f in filters if isinstance(f, dict) and f.get("name")),
        _doc_to_text=compiled(task, "doc_to_text"),
        _doc_to_target=getattr(task, "doc_to_target", None),
        _doc_to_choice=compiled(task, "doc_to_choice"),
        _scorer=lambda doc, filter_name=None, metric=None: task_scorer(task, doc, filter_name, metric),
    )


def task_views(task_dict) -> dict[str, TaskView]:
    """Task name -> view, from what ``simple_evaluate`` hands ``evaluate`` (``{"tasks": ..., "groups": ...}`` in
    lm-eval 0.4.13; a flat name -> task (or group -> dict) mapping in older releases)."""
    if isinstance(task_dict, dict) and "tasks" in task_dict and isinstance(task_dict["tasks"], dict):
        flat = dict(task_dict["tasks"])
    else:
        flat = {}

        def walk(d):
            for k, v in (d or {}).items():
                if isinstance(v, dict):
                    walk(v)
                elif hasattr(v, "process_results"):
                    flat[getattr(k, "group_name", None) or getattr(v, "task_name", None) or str(k)] = v

        walk(task_dict)
    return {name: task_view(name, task) for name, task in flat.items()}
