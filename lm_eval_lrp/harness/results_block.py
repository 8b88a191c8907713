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


def confidence_counts(blocks: list[dict]) -> dict:
    """How the locations of a task were established: counts and shares of confirmed / single / fallback, and
    ``none`` (nothing located)."""
    from ..locate.confidence import LEVELS

    counts = Counter(b.get("confidence") or "none" for b in blocks)
    n = len(blocks)
    out = {level: counts.get(level, 0) for level in (*LEVELS, "none")}
    out["share"] = {level: round(out[level] / n, 4) if n else None for level in (*LEVELS, "none")}
    return out


def _accuracy(results: dict | None, task: str, metric: str | None, filt: str | None):
    if results is None or not metric:
        return None
    return results.get("results", {}).get(task, {}).get(f"{metric},{filt or 'none'}")


def results_block(per_task: dict[str, list[dict]], work, results: dict | None, config) -> dict:
    """The ``lrp`` summary: per task lm-eval's metric and accuracy, the true failure count, and what attribution
    made of them (``work`` is the run's :class:`~lm_eval_lrp.harness.plan.Plan`)."""
    tasks, notes = {}, list(work.notes)
    for name, tp in work.tasks.items():
        records = per_task.get(name, [])
        attributed = [r for r in records if r["status"] == "attributed"]
        skipped = Counter(r["reason"] for r in records if r["status"] == "skipped")
        errors = Counter(r["reason"] for r in records if r["status"] == "error")
        deltas = [r["delta"] for r in attributed]
        ratios = [r["conservation"]["ratio"] for r in attributed if (r.get("conservation") or {}).get("ratio") is not None]
        faithful = [r["faithfulness"]["attnlrp_beats"] for r in attributed if r.get("faithfulness")]
        folder = tp.file.parent if tp.file is not None else None
        graphs = sorted(folder.glob(f"graph_{name}_*.json")) if folder is not None and folder.is_dir() else []
        tasks[name] = {
            "metric": tp.metric,
            "filter": tp.filter,
            "accuracy": _accuracy(results, name, tp.metric, tp.filter),
            "failures": tp.n_failures,
            "explained": len(records),  # failures looked at (at most --lrp_max_failures)
            "attributed": len(attributed),
            "weak": sum(1 for r in records if r.get("weak")),
            "skipped": dict(skipped),
            "errors": dict(errors),
            "clean_case_rate": (len(attributed) / len(records)) if records else None,
            "median_delta": statistics.median(deltas) if deltas else None,
            "median_conservation_ratio": statistics.median(ratios) if ratios else None,
            "top_wrong_tokens": _top_wrong_tokens(attributed),
            "file": tp.file.name if tp.file is not None and tp.file.exists() else None,
            "graphs": len(graphs),
        }
        if work.stopped.get(name):
            tasks[name]["stopped"] = work.stopped[name]
        if work.fallbacks.get(name):
            tasks[name]["fallbacks"] = dict(work.fallbacks[name])  # cause -> count: the usual path was not taken
        cut = [int(r.get("truncated_tokens") or 0) for r in records if r.get("truncated_tokens")]
        if cut:
            tasks[name]["truncated"] = len(cut)
            limit = f"--lrp_max_length {config.max_length}" if config.max_length else "the model's max_length"
            notes.append(f"{name}: {len(cut)} of {len(records)} explained contexts were cut from the left to fit {limit} "
                         f"(up to {max(cut)} tokens dropped; the question may be missing); raise --lrp_max_length "
                         "to explain whole prompts")
        timings = Counter()
        for r in records:
            timings.update(r.get("timings") or {})
        tasks[name]["seconds"] = {
            "records": round(sum(r.get("seconds") or 0.0 for r in records), 3),  # everything per failure
            **{k: round(v, 3) for k, v in sorted(timings.items())},  # of which: LRP forward, backward, ...
            "writing": round(work.write_seconds.get(name, 0.0), 3),
        }
        located = [r["locate"] for r in records if isinstance(r.get("locate"), dict)]
        if located:
            rollouts = [len(b.get("rollouts") or []) for b in located]
            tasks[name]["locate"] = {
                "chain": located[0].get("chain"),
                "located_by": dict(Counter(b.get("locator") or "none" for b in located)),
                "rollouts": sum(rollouts),
                "rollouts_per_failure": round(sum(rollouts) / len(located), 2),
                "budget_exhausted": sum(1 for b in located if b.get("budget_exhausted")),
                "seconds": round(sum(b.get("seconds_total") or 0.0 for b in located), 3),
                "confidence": confidence_counts(located),
            }
            cut = [b["reached_max_gen_toks"] for b in located if b.get("reached_max_gen_toks")]
            if cut:
                tasks[name]["locate"]["reached_max_gen_toks"] = len(cut)
                notes.append(f"{name}: {len(cut)} of {len(located)} failures stopped at max_gen_toks ({max(cut)} tokens) "
                             "before the task's stop sequence: the answer may be missing only because the output was "
                             "cut, and the located step may be right work. Raise the budget to tell them apart "
                             f"(--gen_kwargs max_gen_toks={2 * max(cut)})")
        if faithful:
            tasks[name]["faithfulness"] = {
                "n": len(faithful),
                "beats_grad_x_input": sum(bool(f.get("grad_x_input")) for f in faithful) / len(faithful),
                "beats_random": sum(bool(f.get("random")) for f in faithful) / len(faithful),
            }
    files = [str(tp.file) for tp in work.tasks.values() if tp.file is not None and tp.file.exists()]
    extra = {"unwritten": work.unwritten} if work.unwritten else {}
    return {
        **extra,
        "rule": config.rule,
        "min_delta": config.min_delta,
        "output_dir": str(Path(files[0]).parent) if files else None,
        "files": files,
        "notes": notes,
        "tasks": tasks,
    }
