"""N runs side by side (sizes, training checkpoints; the paper's Fig. 5–7): the first run's failures followed
across every other run, from the pairwise summaries of :func:`lm_eval_lrp.compare.compare` (plain dicts).

Per run: accuracy per task; over the first run's attributed failures, the median Δℓ, how many are corrected
(Δℓ < 0: the run's model prefers the gold token at the first run's position) and not, the mean total input
relevance ΣR, and the mean share of Σ|R| per prompt segment. Per case: Δℓ on every run (the drill-down).
"""

from __future__ import annotations

import math
import statistics

from ..compare import SEGMENTS


def _ok(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _median(xs):
    xs = [x for x in xs if _ok(x)]
    return statistics.median(xs) if xs else None


def _mean(xs):
    xs = [x for x in xs if _ok(x)]
    return statistics.fmean(xs) if xs else None


def trend(summaries: list[dict]) -> dict:
    """The N-run view of ``summaries`` (the first run against each other run, in order)."""
    if not summaries:
        return {"runs": [], "accuracy": [], "per_run": [], "cases": []}
    n = len(summaries) + 1
    runs = [{"name": summaries[0]["a"]["name"], "run": summaries[0]["a"]["run"]}]
    runs += [{"name": s["b"]["name"], "run": s["b"]["run"]} for s in summaries]
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
    seg_names = [g for g in SEGMENTS if any(g in (e["segments"][0] or {}) for e in rows)]
    per_run = []
    for i in range(n):
        deltas = [e["delta"][i] for e in rows]
        known = [d for d in deltas if _ok(d)]
        per_run.append({
            "median_delta": _median(deltas),
            "corrected": sum(d < 0 for d in known),
            "not_corrected": sum(d >= 0 for d in known),
            "cases": len(known),
            "mean_sum": _mean([e["sum"][i] for e in rows]),
            "segments": {g: _mean([(e["segments"][i] or {}).get(g) for e in rows]) for g in seg_names},
        })
    return {"runs": runs, "accuracy": list(accuracy.values()), "per_run": per_run, "segments": seg_names, "cases": rows,
            "notes": [note for s in summaries for note in s["notes"] if note.startswith("nothing was compared")][:1]}
