"""The route from lm-eval's evaluation to the attribution loop: a wrapper around ``lm_eval.evaluator.evaluate``.

Inside, lm-eval runs unchanged with ``log_samples=True``; its logged samples carry the task's own verdicts (filters,
``process_results``, metrics). Samples the caller did not ask for are removed again, so results and outputs equal
those of the same run without attribution, plus an ``lrp`` summary. Models other than ``hf-lrp`` pass straight
through. The ``--lrp_metric`` / ``--lrp_filter`` names are checked against the loaded tasks before anything runs.
"""

from __future__ import annotations

import functools
import logging

from .model import HFLRP
from .naming import run_dir
from .tasks import TaskView, task_views

log = logging.getLogger("lm_eval_lrp")

#: ``(lrp summary, allow_errors)`` of each evaluation routed through attribution since :func:`run_cli` cleared it;
#: the command decides its exit status from them after lm-eval saved its results (:mod:`lm_eval_lrp.outcome`)
OUTCOMES: list[tuple[dict, bool]] = []


class LRPOptionError(ValueError):
    """An ``--lrp_*`` value that does not fit the tasks being evaluated (raised before the evaluation starts)."""


def unwrap(lm):
    """The HFLRP behind lm-eval's wrappers (``--use_cache`` wraps the model in a CachingLM)."""
    seen = 0
    while lm is not None and not isinstance(lm, HFLRP) and hasattr(lm, "lm") and seen < 3:
        lm, seen = lm.lm, seen + 1
    return lm if isinstance(lm, HFLRP) else None


def check_names(cfg, views: dict[str, TaskView]) -> list[str]:
    """Raise when ``lrp_metric`` / ``lrp_filter`` names nothing in any evaluated task; notes for tasks they miss."""
    notes = []
    judged = {n: v for n, v in views.items() if v.output_type in ("multiple_choice", "generate_until")}
    for option, value, names_of in (
        ("metric", cfg.metric, lambda v: v.metrics),
        ("filter", cfg.filter, lambda v: v.filters or ("none",)),
    ):
        if value is None or not judged:
            continue
        fits = [n for n, v in judged.items() if value in names_of(v)]
        if not fits:
            valid = sorted({m for v in judged.values() for m in names_of(v)})
            raise LRPOptionError(
                f"--lrp_{option} {value}: no evaluated task has a {option} of that name; "
                f"the {option}s of {', '.join(judged)} are: {', '.join(valid) or '(none)'}"
            )
        notes += [f"{n}: --lrp_{option} {value} is not one of its {option}s; nothing attributed for it"
                  for n in judged if n not in fits]
    return notes


def attribute(model: HFLRP, task_dict, results: dict | None, notes: list[str]) -> dict:
    from ..harness import attribute_run

    views = task_views(task_dict)
    samples = results.get("samples") if results is not None else None
    out = run_dir(model.lrp.output_path, model.lrp_name_args)
    return attribute_run(model.subject(), views, samples or {}, results, out, notes=notes)


def wrap(original):
    """``original`` (lm-eval's evaluate) with attribution after it for ``hf-lrp`` models."""

    @functools.wraps(original)
    def evaluate(*args, **kwargs):
        lm = kwargs.get("lm", args[0] if args else None)
        model = unwrap(lm)
        if model is None:
            return original(*args, **kwargs)
        task_dict = kwargs.get("task_dict", args[1] if len(args) > 1 else None)
        notes = check_names(model.lrp, task_views(task_dict))
        wanted = kwargs.get("log_samples", True)
        kwargs["log_samples"] = True
        results = original(*args, **kwargs)
        try:
            summary = attribute(model, task_dict, results, notes)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - attribution never costs the user the evaluation; exit status 3 says it failed
            log.exception("lm-eval-lrp: attribution failed; the evaluation's results are kept")
            summary = {"error": f"{type(err).__name__}: {err}"}
        from ..outcome import problems

        if summary:
            summary["problems"] = problems(summary)
        OUTCOMES.append((summary, bool(model.lrp.allow_errors)))
        if results is not None:
            results["lrp"] = summary
            if not wanted:
                results.pop("samples", None)
        return results

    evaluate._lm_eval_lrp = True
    return evaluate
