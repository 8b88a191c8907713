"""The harness's attribution rate against the engine's, on the same failures, side by side in one process.

A tiny random model (2-layer Llama, hidden 64, SmolLM2's tokenizer; tests/tiny_harness.py) evaluates a local
multiple-choice task through the real CLI (``--lrp``, in this process). Its compute is nearly zero, so what is left
of the harness's time is the host work done per record: cases, tokens, records, files. The wrapper around
``lm_eval_lrp.harness.attribute_run`` keeps the arguments of that first call; then, in interleaved rounds:

* **harness**: ``attribute_run`` again on them, into a fresh output folder each time (the whole attribution step:
  judging, planning, cases, explanations, records and node sidecars written, the summary);
* **engine**: ``explain_many`` on the same failures (the records' explained contrasts), same batch size, same
  options (rule, top-k, node relevance).

* **compute**: ``explain_many`` as above plus the sequence-level contrasts the records carry (those with Δℓ < 0,
  batched as the harness batches them): the compute a harness run cannot skip.

Rate = failures / median wall time; the figure is harness rate ÷ engine rate (goal ≥ 0.7); harness time ÷ compute
time is what the harness adds beyond that compute. ``--profile`` prints the
cProfile of one more harness run (the heaviest functions by own time).

    python benchmarks/harness_rate.py                       # 300 documents, batch size 8, 5 rounds
    python benchmarks/harness_rate.py --docs 600 --batch_size 16 --rounds 7 --profile
    python benchmarks/harness_rate.py --device cuda --dtype bfloat16 --layers 4 --hidden 256   # on a GPU
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import _common as common  # noqa: E402
from lm_eval_lrp.compare_stats import median_of  # noqa: E402

GOAL = 0.7


def _task(root: Path, n_docs: int) -> Path:
    """A local multiple-choice task of ``n_docs`` arithmetic questions (three choices each)."""
    import tiny_harness as th

    tasks = root / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    with open(root / "rate.jsonl", "w") as fh:
        for i in range(n_docs):
            a, b = 1 + i % 37, 1 + (i * 7) % 23
            fh.write(json.dumps({"question": f"What is {a} plus {b}? Think of the numbers {a}, {b} and their sum.",
                                 "choices": [str(a + b), str(a + b + 1), str(a * b + 7)], "label": i % 3}) + "\n")
    (tasks / "rate_mc.yaml").write_text(th.MC_YAML.replace("tiny_mc", "rate_mc").format(data=root / "rate.jsonl"))
    return tasks


def _evaluate_once(args, root: Path) -> dict:
    """The CLI run, in this process; the first ``attribute_run`` call's arguments and its records."""
    import lm_eval_lrp
    import lm_eval_lrp.harness as harness
    from lm_eval_lrp.cli import main

    import tiny_harness as th

    lm_eval_lrp.install()
    model = args.model or th.build(root, layers=args.layers, hidden=args.hidden)
    tasks = _task(root, args.docs)
    seen: dict = {}
    inner = harness.attribute_run

    def keep(subject, views, samples, results, out_dir, notes=None):
        seen.update(subject=subject, views=views, samples=samples, results=results, notes=notes)
        return inner(subject, views, samples, results, out_dir, notes=notes)

    import lm_eval_lrp.harness.attribute as attribute

    sequences = attribute.explain_sequences_many

    def keep_triples(model, triples, *a, **kw):  # the sequence-level contrasts the records carry (Δℓ < 0)
        seen.setdefault("triples", []).extend(triples)
        return sequences(model, triples, *a, **kw)

    harness.attribute_run, attribute.explain_sequences_many = keep, keep_triples
    try:
        main(["--model", "hf", "--model_args", f"pretrained={model},dtype={args.dtype}", "--include_path", str(tasks),
              "--tasks", "rate_mc", "--device", args.device, "--batch_size", str(args.eval_batch_size), "--output_path",
              str(root / "first"), "--lrp", "--lrp_batch_size", str(args.batch_size), "--lrp_min_delta", "0"])
    finally:
        harness.attribute_run, attribute.explain_sequences_many = inner, sequences
    if "subject" not in seen:
        raise RuntimeError("the attribution step never ran")
    return seen


def _records(out: Path) -> list[dict]:
    files = sorted(out.glob("attributions_rate_mc_*.jsonl"))
    return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=300, help="documents of the local task (default 300)")
    ap.add_argument("--batch_size", type=int, default=8, help="--lrp_batch_size and explain_many's (default 8)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--eval_batch_size", type=int, default=16, help="lm-eval's --batch_size (default 16)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", help="a saved model folder (with its tokenizer) instead of the tiny random model")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: a tiny model's ops are too small to split, and on a "
                    "shared machine more threads make the timings erratic; 0 = torch's own)")
    ap.add_argument("--profile", nargs="?", const="", metavar="FILE",
                    help="cProfile one more harness run (and keep the profile in FILE, if given)")
    ap.add_argument("--records", help="copy the first timed harness run's records to this JSONL file")
    ap.add_argument("--out", default=str(common.ROOT / "runs" / "bench" / "harness_rate.json"))
    args = ap.parse_args(argv)

    import torch

    from lm_eval_lrp.lrp.batched import explain_many
    from lm_eval_lrp.record import Record

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="harness_rate_"))
    seen = _evaluate_once(args, work)
    subject = seen["subject"]
    cfg = subject.config
    first = _records(common.run_dir(work / "first"))
    contrasts = [Record(r).explained for r in first if r["status"] != "error"]
    contrasts = [c for c in contrasts if c is not None]
    print(f"{len(first)} failures, {len(contrasts)} explained; batch size {args.batch_size}", flush=True)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def run_harness(tag: str) -> float:
        sync()
        t = time.perf_counter()
        seen_out = work / tag
        import lm_eval_lrp.harness as harness

        with contextlib.redirect_stderr(io.StringIO()):  # the summary table, rendered but not shown
            harness.attribute_run(subject, seen["views"], seen["samples"], seen["results"], seen_out, notes=seen["notes"])
        sync()
        return time.perf_counter() - t

    def run_engine() -> float:
        sync()
        t = time.perf_counter()
        explain_many(subject.model, contrasts, batch_size=args.batch_size, rule=cfg.rule, topk=cfg.topk, nodes=cfg.nodes)
        sync()
        return time.perf_counter() - t

    triples = seen.get("triples", [])
    size = args.batch_size

    def run_compute() -> float:
        """The compute a harness run cannot skip: explain_many and the records' sequence-level contrasts."""
        from lm_eval_lrp.lrp.sequences_batched import explain_sequences_many

        sync()
        t = time.perf_counter()
        explain_many(subject.model, contrasts, batch_size=size, rule=cfg.rule, topk=cfg.topk, nodes=cfg.nodes)
        if triples:
            explain_sequences_many(subject.model, triples, size, rule=cfg.rule)
        sync()
        return time.perf_counter() - t

    times = {"harness": [], "engine": [], "compute": []}
    sides = {"harness": lambda r: run_harness(f"h{r}"), "engine": lambda r: run_engine(),
             "compute": lambda r: run_compute()}
    for r in range(args.rounds):
        order = ("harness", "engine", "compute") if r % 2 == 0 else ("compute", "engine", "harness")
        for side in order:
            times[side].append(sides[side](r))
        check = _records(work / f"h{r}")
        if r == 0 and args.records:
            Path(args.records).write_text("".join(json.dumps(x) + "\n" for x in check))
        if len(check) != len(first):
            raise RuntimeError(f"round {r}: {len(check)} records, the first run wrote {len(first)}")
        print(f"round {r + 1}: harness {times['harness'][-1]:.3f} s, engine {times['engine'][-1]:.3f} s, "
              f"engine + sequence contrasts {times['compute'][-1]:.3f} s", flush=True)

    n = len(first)
    harness_rate = n / median_of(times["harness"])
    engine_rate = len(contrasts) / median_of(times["engine"])
    ratios = [h_n / e for h_n, e in zip((n / h for h in times["harness"]), (len(contrasts) / e for e in times["engine"]))]
    result = {"machine": common.machine(), "device": args.device, "dtype": args.dtype, "layers": args.layers,
              "hidden": args.hidden, "documents": args.docs, "failures": n, "explained": len(contrasts),
              "batch_size": args.batch_size, "threads": torch.get_num_threads(), "rounds": args.rounds, "times_s": times,
              "harness_failures_per_s": harness_rate, "engine_failures_per_s": engine_rate,
              "ratio": harness_rate / engine_rate, "ratio_per_round": ratios, "goal": GOAL,
              "sequence_contrasts": len(triples), "ratio_to_compute": median_of(times["compute"]) / median_of(times["harness"]),
              "ratio_to_compute_per_round": [c / h for c, h in zip(times["compute"], times["harness"])]}
    print(f"\nharness {harness_rate:.1f} failures/s, engine {engine_rate:.1f} failures/s: "
          f"ratio {result['ratio']:.2f} (per round {', '.join(f'{x:.2f}' for x in ratios)}; goal ≥ {GOAL})")
    print(f"harness time ÷ the compute it cannot skip (explain_many + {len(triples)} sequence-level contrasts): "
          f"{1 / result['ratio_to_compute']:.2f}× (per round {', '.join(f'{1 / x:.2f}' for x in result['ratio_to_compute_per_round'])})")
    if args.profile is not None:
        prof = cProfile.Profile()
        prof.enable()
        run_harness("profiled")
        prof.disable()
        if args.profile:
            prof.dump_stats(args.profile)
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(25)
        print(text.getvalue())
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(40)
        print(text.getvalue())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
