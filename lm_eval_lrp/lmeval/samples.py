"""lm-eval's logged samples, read in one place: which are failures, and each failure as a plain :class:`Failure`.

A logged sample is the dict lm-eval keeps per document and filter (``doc``, ``arguments``, ``resps``,
``filtered_resps``, ``target``, ``filter``, the hashes, ``metrics`` and one value per metric). Nothing else in
lm-eval-lrp reads its keys: the harness gets :class:`~lm_eval_lrp.failures.Failure` values whose fields are filled
here (``Failure.sample`` travels along only for the seam's own :class:`~lm_eval_lrp.lmeval.tasks.TaskView`).

Correctness comes from lm-eval: each logged sample carries the values of the task's metrics, computed by the
task's own filters and ``process_results``. A sample is a failure when its primary metric is below its best value
(higher-is-better metrics: value < 1; lower-is-better: value > 0).
"""

from __future__ import annotations

import numpy as np

from ..failures import Failure, is_wrong


def scalar_metrics(sample: dict) -> dict:
    out = {}
    for name in sample.get("metrics", []):
        value = sample.get(name)
        if isinstance(value, (bool, int, float, np.integer, np.floating)):
            out[name] = float(value)
    return out


def primary_metric(sample: dict, preferred: str | None = None) -> str | None:
    metrics = scalar_metrics(sample)
    if preferred:
        return preferred if preferred in metrics else None
    return next(iter(metrics), None)


def select_filter(samples: list[dict], preferred: str | None = None) -> str | None:
    """The filter whose samples are judged: ``preferred`` if present, else the task's first filter."""
    filters = list(dict.fromkeys(s.get("filter") for s in samples))
    if preferred is not None:
        return preferred if preferred in filters else None
    return filters[0] if filters else None


def judged_by(samples: list[dict], metric: str | None = None, filter_name: str | None = None) -> tuple[str | None, str | None]:
    """(filter, metric) that decide "wrong" for a task's samples (None where the task has none of them)."""
    chosen = select_filter(samples, filter_name)
    first = next((s for s in samples if s.get("filter") == chosen), None)
    return chosen, (primary_metric(first, metric) if first is not None else None)


def sample_output(sample: dict) -> str:
    """The model's generated text of a generate_until sample (lm-eval's ``resps``: one list per request)."""
    resp = sample.get("resps", [[""]])[0]
    return resp[0] if isinstance(resp, list) and resp else str(resp)


def sample_context(sample: dict, index: int = 0) -> str:
    """The context string of request ``index`` (``arguments``: one (context, continuation|gen_kwargs) per request)."""
    return sample["arguments"][index][0]


def sample_doc_id(sample: dict):
    """The sample's ``doc_id`` (None when it has none, e.g. a document rather than a logged sample)."""
    return sample.get("doc_id")


def sample_target(sample: dict):
    """The sample's ``target`` (what lm-eval compared the answer with), as logged."""
    return sample.get("target")


def generation_kwargs(sample: dict) -> dict:
    """The generation settings of a generate_until request (``until``, ``max_gen_toks``, ...); {} when absent."""
    first = sample["arguments"][0]
    kwargs = first[1] if len(first) > 1 else {}
    return kwargs if isinstance(kwargs, dict) else {}


def failure_of(task: str, doc_id: int, kind: str, sample: dict, metric: str, metrics: dict | None = None) -> Failure:
    """One logged sample as the plain :class:`Failure` the harness works on."""
    requests = [tuple(a[:2]) for a in sample.get("arguments") or []]
    generated = kind == "generate_until"
    return Failure(task, doc_id, kind, sample, metric,
                   dict(metrics or {}), doc=sample.get("doc"), filter=sample.get("filter"),
                   doc_hash=sample.get("doc_hash"), prompt_hash=sample.get("prompt_hash"), requests=requests,
                   output=sample_output(sample) if generated else "",
                   gen_kwargs=generation_kwargs(sample) if generated and requests else {},
                   target=sample_target(sample))


def find_failures(
    task_name: str,
    output_type: str,
    samples: list[dict],
    higher_is_better: dict | None = None,
    metric: str | None = None,
    filter_name: str | None = None,
) -> tuple[list[Failure], list[str]]:
    """Failures among the logged samples of one task, and notes to show the user (once)."""
    notes: list[str] = []
    if output_type == "loglikelihood_rolling":
        return [], [f"{task_name}: loglikelihood_rolling (perplexity) has no right or wrong answers; nothing to attribute"]
    if output_type not in ("multiple_choice", "generate_until"):
        return [], [f"{task_name}: output_type {output_type!r} is not attributed (only multiple_choice and generate_until)"]
    chosen = select_filter(samples, filter_name)
    if chosen is None:
        notes.append(f"{task_name}: filter {filter_name!r} not found; nothing attributed")
        return [], notes
    hib = higher_is_better or {}
    failures = []
    for sample in samples:
        if sample.get("filter") != chosen:
            continue
        name = primary_metric(sample, metric)
        if name is None:
            if not sample.get("metrics") or "bypass" in sample.get("metrics", []):
                notes.append(f"{task_name}: no metrics were computed (--predict_only?), so nothing can be judged wrong")
            else:
                notes.append(f"{task_name}: metric {metric!r} not among {sample.get('metrics')}; nothing attributed")
            return [], notes
        values = scalar_metrics(sample)
        if is_wrong(values[name], hib.get(name, True)):
            failures.append(failure_of(task_name, int(sample["doc_id"]), output_type, sample, name, values))
    return failures, notes
