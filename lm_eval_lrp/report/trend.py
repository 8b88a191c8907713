"""N runs side by side (sizes, training checkpoints; the paper's Fig. 5–7): the first run's failures followed
across every other run, from the pairwise summaries of :func:`lm_eval_lrp.reexplain.compare` (plain dicts).

Per run: accuracy per task; over the first run's attributed failures, the median Δℓ, how many are corrected
(Δℓ < 0: the run's model prefers the gold token at the first run's position) and not, the mean total input
relevance ΣR, and the mean share of Σ|R| per prompt segment. Per case: Δℓ on every run (the drill-down).
"""

from __future__ import annotations

import re

from ..compare_stats import is_finite, mean_of, median_of
from ..segments import SEGMENT_ORDER


def _run(side: dict) -> dict:
    return {k: side.get(k) for k in ("name", "run", "model", "dtype", "rule")}


def _strip_common(names: list[str]) -> list[str]:
    """The names without the words all of them share at the start and at the end (``qwen2.5-coder-0.5b-instruct``,
    ``qwen2.5-coder-1.5b-instruct`` → ``0.5b``, ``1.5b``); the names themselves when that would leave one empty."""
    parts = [re.split(r"([-_@/ ])", n) for n in names]
    if len(set(names)) < 2:
        return names
    lo = 0
    while all(len(p) > lo for p in parts) and len({p[lo] for p in parts}) == 1:
        lo += 1
    hi = 0
    while all(len(p) - hi > lo for p in parts) and len({p[len(p) - 1 - hi] for p in parts}) == 1:
        hi += 1
    out = ["".join(p[lo:len(p) - hi]).strip("-_@/ ") for p in parts]
    return names if any(not x for x in out) else out


def distinct_labels(runs: list[dict]) -> list[str]:
    """Short labels that tell the runs apart: what differs among model names, dtypes and rules, and only that."""
    models = [r.get("model") or (r.get("name") or "?").split(" (")[0].rstrip("/").rsplit("/", 1)[-1] for r in runs]
    columns = [_strip_common(models) if len(set(models)) > 1 else None]
    columns += [[r.get(k) or "" for r in runs] if len({r.get(k) for r in runs}) > 1 else None for k in ("dtype", "rule")]
    columns = [c for c in columns if c] or [models]
    return [" ".join(x for x in row if x) for row in zip(*columns)]


def trend(summaries: list[dict]) -> dict:
    """The N-run view of ``summaries`` (the first run against each other run, in order)."""
    if not summaries:
        return {"runs": [], "accuracy": [], "per_run": [], "cases": []}
    n = len(summaries) + 1
    runs = [_run(summaries[0]["a"])] + [_run(s["b"]) for s in summaries]
    for r, label in zip(runs, distinct_labels(runs)):
        r["label"] = label
    accuracy: dict[str, dict] = {}
    for i, s in enumerate(summaries, 1):
        for row in s["accuracy"]:
            e = accuracy.setdefault(row["task"], {"task": row["task"], "metric": row["metric"], "by_run": [None] * n})
            e["by_run"][0] = row["a"] if e["by_run"][0] is None else e["by_run"][0]
            e["by_run"][i] = row["b"]
    cases: dict[tuple, dict] = {}
    for i, s in enumerate(summaries, 1):
        for c in s["cases"]:
            e = cases.setdefault((c["task"], c["doc_id"]), {
                "task": c["task"], "doc_id": c["doc_id"], "target": c["target"], "contrast": c["contrast"],
                "delta": [c["delta_a"]] + [None] * (n - 1), "sum": [c.get("sum_a")] + [None] * (n - 1),
                "segments": [c["segments_norm_a"]] + [None] * (n - 1), "pattern": [c["pattern_a"]] + [None] * (n - 1)})
            e["delta"][i], e["sum"][i] = c["delta_b"], c.get("sum_b")
            e["segments"][i], e["pattern"][i] = c["segments_norm_b"], c["pattern_b"] or ("corrected" if c["corrected"] else None)
    rows = sorted(cases.values(), key=lambda e: (e["task"], str(e["doc_id"])))
    seg_names = [g for g in SEGMENT_ORDER if any(g in (e["segments"][0] or {}) for e in rows)]
    per_run = []
    for i in range(n):
        deltas = [e["delta"][i] for e in rows]
        known = [d for d in deltas if is_finite(d)]
        per_run.append({
            "median_delta": median_of(deltas),
            "corrected": sum(d < 0 for d in known),
            "not_corrected": sum(d >= 0 for d in known),
            "cases": len(known),
            "mean_sum": mean_of([e["sum"][i] for e in rows]),
            "segments": {g: mean_of([(e["segments"][i] or {}).get(g) for e in rows]) for g in seg_names},
        })
    return {"runs": runs, "accuracy": list(accuracy.values()), "per_run": per_run, "segments": seg_names, "cases": rows,
            "notes": [note for s in summaries for note in s["notes"] if note.startswith("nothing was compared")][:1]}
