"""A generate_until task's own verdict on an output text, as a plain ``score(text) -> bool`` for one document.

The text goes through the task's filter pipeline (the chosen filter: the task's first unless named) and its
``process_results``, exactly as lm-eval scores a logged response; the document is correct when the chosen metric
(the task's first unless named) is at its best value (≥ 1 for higher-is-better metrics, ≤ 0 otherwise). This is
what the ``rollout`` locator needs (:class:`lm_eval_lrp.locate.Context` ``score``).
"""

from __future__ import annotations

from typing import Callable


def task_scorer(task, doc, filter_name: str | None = None, metric: str | None = None) -> Callable[[str], bool]:
    ensembles = list(getattr(task, "_filters", []) or [])
    if filter_name is not None:
        ensembles = [e for e in ensembles if e.name == filter_name]
        if not ensembles:
            raise ValueError(f"filter {filter_name!r} not among the task's filters")
    pipeline = ensembles[0].filters if ensembles else []
    higher = task.higher_is_better() if hasattr(task, "higher_is_better") else {}

    def score(text: str) -> bool:
        resps = [[text]]
        for make in pipeline:
            resps = list(make().apply(resps, [doc]))
        filtered = resps[0]
        results = task.process_results(doc, [filtered])
        name = metric or next(iter(results))
        value = results[name]
        if isinstance(value, (list, tuple)):  # per-instruction lists (ifeval's inst_level_*): all must hold
            value = float(all(value))
        return float(value) >= 1.0 if higher.get(name, True) else float(value) <= 0.0

    return score


def stop_sequences(task) -> list[str]:
    """The task's ``until`` (lm-eval cuts generations there)."""
    kwargs = task.config.generation_kwargs or {}
    until = kwargs.get("until") or []
    return [until] if isinstance(until, str) else list(until)
