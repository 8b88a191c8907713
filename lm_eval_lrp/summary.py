"""The per-task attribution summary (added to lm-eval's results JSON as ``lrp``), computed from the records."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path


def _top_wrong_tokens(records: list[dict], k: int = 3, n: int = 10) -> list[tuple[str, int]]:
    counts: Counter = Counter()
    for r in records:
        rel, toks = r.get("input_relevance") or [], r.get("tokens") or []
        order = sorted(range(1, len(rel)), key=lambda i: -rel[i])[:k]  # index 0 (BOS / attention sink) excluded
        counts.update(toks[i] for i in order if rel[i] > 0)
    return counts.most_common(n)


def summarize(per_task: dict[str, list[dict]], payload: dict, results: dict | None, files: dict[str, Path], model) -> dict:
    tasks = {}
    for name, records in per_task.items():
        attributed = [r for r in records if r["status"] == "attributed"]
        skipped = Counter(r["reason"] for r in records if r["status"] == "skipped")
        errors = Counter(r["reason"] for r in records if r["status"] == "error")
        deltas = [r["delta"] for r in attributed]
        ratios = [r["conservation"]["ratio"] for r in attributed if r["conservation"].get("ratio") is not None]
        metric = records[0]["metric"] if records else None
        accuracy = None
        if results is not None and metric and records:
            accuracy = results.get("results", {}).get(name, {}).get(f"{metric},{records[0]['filter']}")
        faithful = [r["faithfulness"]["attnlrp_beats"] for r in attributed if r.get("faithfulness")]
        graphs = sorted(files[name].parent.glob(f"graph_{name}_*.json")) if name in files else []
        tasks[name] = {
            "metric": metric,
            "accuracy": accuracy,
            "failures": len(records),
            "attributed": len(attributed),
            "skipped": dict(skipped),
            "errors": dict(errors),
            "clean_case_rate": (len(attributed) / len(records)) if records else None,
            "median_delta": statistics.median(deltas) if deltas else None,
            "median_conservation_ratio": statistics.median(ratios) if ratios else None,
            "top_wrong_tokens": _top_wrong_tokens(attributed),
            "file": files[name].name if name in files else None,
            "graphs": len(graphs),
        }
        timings = Counter()
        for r in records:
            timings.update(r.get("timings") or {})
        tasks[name]["seconds"] = {
            "records": round(sum(r.get("seconds") or 0.0 for r in records), 3),  # everything per failure
            **{k: round(v, 3) for k, v in sorted(timings.items())},  # of which: LRP forward, backward, ...
            "writing": round(payload.get("write_seconds", {}).get(name, 0.0), 3),
        }
        if faithful:
            tasks[name]["faithfulness"] = {
                "n": len(faithful),
                "beats_grad_x_input": sum(bool(f.get("grad_x_input")) for f in faithful) / len(faithful),
                "beats_random": sum(bool(f.get("random")) for f in faithful) / len(faithful),
            }
    return {
        "rule": model.lrp.rule,
        "min_delta": model.lrp.min_delta,
        "output_dir": str(next(iter(files.values())).parent) if files else None,
        "notes": payload.get("notes", []),
        "tasks": tasks,
    }
