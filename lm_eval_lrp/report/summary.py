"""What the report shows of a run, as data: per-task summaries, accuracy, segments and failure pattern of a record.

Reads artifacts only; never runs a model.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from ..artifacts import Run
from ..patterns import LABELS, Thresholds, classify, derived_segments

SEGMENT_ORDER = ("instruction", "fewshot", "signature", "docstring", "query", "answer_so_far")


@dataclass
class TaskSummary:
    name: str
    metric: str | None
    accuracy: float | None
    failures: int
    attributed: int
    skipped: dict
    errors: dict
    clean_case_rate: float | None
    median_delta: float | None
    median_ratio: float | None
    patterns: dict = field(default_factory=dict)
    top_wrong_tokens: list = field(default_factory=list)


def model_args(results: dict | None) -> dict:
    """``config.model_args`` of a results JSON as a dict (lm-eval stores a dict or a ``k=v,...`` string)."""
    args = ((results or {}).get("config") or {}).get("model_args") or {}
    if isinstance(args, str):
        out = {}
        for part in args.split(","):
            if "=" in part:
                k, v = part.split("=", 1)
                out[k.strip()] = v.strip()
        return out
    return dict(args)


def accuracy_of(results: dict | None, task: str, metric: str | None = None, filt: str | None = None) -> tuple[str | None, float | None]:
    """(metric key, value) of a task in lm-eval's results: ``metric,filter`` if given, else the first numeric one."""
    res = ((results or {}).get("results") or {}).get(task) or {}
    if metric:
        for key in ([f"{metric},{filt}"] if filt else []) + [k for k in res if k.split(",")[0] == metric]:
            if isinstance(res.get(key), (int, float)):
                return key, float(res[key])
    for key, v in res.items():
        if "," in key and "_stderr" not in key and isinstance(v, (int, float)) and not isinstance(v, bool):
            return key, float(v)
    return None, None


def segments_of(run: Run, record: dict, task: str | None = None) -> tuple[dict, bool]:
    """(segment sums, derived?): the record's own, else derived from its prompt and the recorded task config."""
    own = record.get("segments") or {}
    if own or record.get("status") != "attributed":
        return own, False
    task = task or record.get("task")
    res = run.results or {}
    derived = derived_segments(record, (res.get("configs") or {}).get(task), (res.get("n-shot") or {}).get(task))
    return derived, bool(derived)


def pattern_of(run: Run, record: dict, thresholds: Thresholds | None = None, task: str | None = None):
    segs, _ = segments_of(run, record, task)
    return classify(record, thresholds, segments=segs)


def summarise(run: Run, thresholds: Thresholds | None = None) -> list[TaskSummary]:
    lrp = ((run.results or {}).get("lrp") or {}).get("tasks") or {}
    names = list(dict.fromkeys(list(lrp) + list(run.tasks)))
    out = []
    for name in names:
        recs = run.tasks[name].records if name in run.tasks else []
        s = lrp.get(name) or {}
        attributed = [r for r in recs if r.get("status") == "attributed"]
        metric = s.get("metric") or (recs[0].get("metric") if recs else None)
        acc = s.get("accuracy")
        if acc is None:
            _, acc = accuracy_of(run.results, name, metric, recs[0].get("filter") if recs else None)
        deltas = [r["delta"] for r in attributed if r.get("delta") is not None]
        ratios = [r["conservation"]["ratio"] for r in attributed if (r.get("conservation") or {}).get("ratio") is not None]
        pats = Counter(pattern_of(run, r, thresholds, name).label for r in attributed)
        out.append(TaskSummary(
            name=name,
            metric=metric,
            accuracy=acc,
            failures=s.get("failures", len(recs)),
            attributed=s.get("attributed", len(attributed)),
            skipped=s.get("skipped") or dict(Counter(r.get("reason") for r in recs if r.get("status") == "skipped")),
            errors=s.get("errors") or dict(Counter(r.get("reason") for r in recs if r.get("status") == "error")),
            clean_case_rate=s.get("clean_case_rate", (len(attributed) / len(recs)) if recs else None),
            median_delta=s.get("median_delta", statistics.median(deltas) if deltas else None),
            median_ratio=s.get("median_conservation_ratio", statistics.median(ratios) if ratios else None),
            patterns={k: pats.get(k, 0) for k in LABELS},
            top_wrong_tokens=s.get("top_wrong_tokens") or [],
        ))
    return out
