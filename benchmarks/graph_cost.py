"""What does a whole attribution graph cost, next to one contrastive LRP backward? SmolLM2-135M (fp32, CPU).

Per context length, in a fresh child process (so that peak memory is its own):

* ``backward``  -- one contrastive AttnLRP backward, ``explain()`` (the monolithic graph);
* ``layerwise`` -- the same backward block by block with recomputation (``explain(..., recompute=True)``);
* ``graph``     -- ``build_graph()``: the whole graph (60 transitions: 30 attention in closed form, 30 MLP diagonal),
  node threshold 0.01, per-transition mass pruning p = 0.85, subgraph reaching the final node;
* ``packed``    -- the batch-packed reference (B copies of the block input, one target row seeded per copy, B from
  free memory), timed on a sample of transitions (blocks first / middle / last, attention and MLP) and
  targets, then **extrapolated** to every target of every transition (labelled "extrap.");
* ``naive``     -- one target per backward, timed on a few targets of the same transitions, **extrapolated** likewise.

On the sampled transitions the closed-form / diagonal rows are compared with the batch-packed rows (max relative
error). Peak memory: the child's peak resident set size (VmHWM) right after the graph build (model + graph).

    python benchmarks/graph_cost.py                  # 64 128 256 512
    python benchmarks/graph_cost.py --full           # ... and 1024 4096 (references only up to --reference-max, 1024)
    python benchmarks/graph_cost.py --longest        # ... then one layerwise backward at 8192 and 16384 tokens
    python benchmarks/graph_cost.py --sizes none --longest --time-limit 900
    python benchmarks/graph_cost.py --sizes 128 --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import GGUF, smollm2_dir  # noqa: E402 (benchmarks/_common.py: the SmolLM2 GGUF)

DEFAULT = (64, 128, 256, 512)
FULL = (1024, 4096)
LONGEST = (8192, 16384)
SEED_PAPER_S = {64: 6.7, 128: 18.0, 256: 55.0, 512: 138.0}  # the seed paper's whole-graph times on this CPU
SEED_PAPER_X = {64: 21, 128: 31, 256: 58, 512: 61}  # ... as multiples of one LRP backward
TEXT = (
    "In the valley below the old observatory, a small cooperative of farmers kept detailed notebooks about the "
    "weather. Every morning one of them climbed the hill, read the thermometers and the rain gauge, and wrote the "
    "numbers next to a short remark about the clouds. Over forty years the notebooks filled two shelves of the "
    "village library. When a student from the university asked to borrow them, the librarian hesitated, then "
    "agreed on the condition that every page be photographed and returned within a month. "
)


def peak_mib() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn):
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


# ----------------------------------------------------------------------------- child


def load():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir(), gguf_file=GGUF, dtype=torch.float32).eval()
    return model, tok


def prompt(tok, T: int):
    import torch

    ids = tok(TEXT * (1 + 4 * T // len(TEXT.split())), add_special_tokens=False)["input_ids"]
    while len(ids) < T:
        ids = ids + ids
    return torch.tensor(ids[:T])


def child_graph(args) -> dict:
    import torch

    from lm_eval_lrp.graph import build_graph
    from lm_eval_lrp.graph import attention as A
    from lm_eval_lrp.graph import edges as E
    from lm_eval_lrp.graph.build import auto_batch_size
    from lm_eval_lrp.lrp import Composite, architecture_of, explain
    from lm_eval_lrp.lrp.layerwise import backward_blocks, objective_gradient, record_forward

    model, tok = load()
    T = args.length
    ids = prompt(tok, T)
    with torch.no_grad():
        logits = model(ids.unsqueeze(0), logits_to_keep=1).logits[0, -1]
    top2 = logits.topk(2).indices.tolist()
    target, contrast = top2[0], top2[1]  # explain the model's preference for its top token over the runner-up
    explain(model, ids[:16], -1, target, contrast)
    build_graph(model, ids[:16], -1, target, contrast)
    out = {"length": T, "threads": torch.get_num_threads()}

    # the graph first: the child's peak resident memory (VmHWM cannot be reset everywhere) is then the graph's.
    # Then --repeats rounds of (graph, backward, layerwise), interleaved so that load from other processes hits
    # all three alike; medians are reported.
    import statistics

    g = None
    runs = {"graph": [], "backward": [], "layerwise": []}
    for r in range(args.repeats):
        g, w, c = timed(lambda: build_graph(model, ids, -1, target, contrast))
        runs["graph"].append((w, c))
        if r == 0:
            out["graph_peak_mib"] = peak_mib()
        if T <= args.monolithic_max:
            e, w, c = timed(lambda: explain(model, ids, -1, target, contrast))
            runs["backward"].append((w, c))
            out["delta"] = e.delta
        _, w, c = timed(lambda: explain(model, ids, -1, target, contrast, recompute=True))
        runs["layerwise"].append((w, c))
    for name, vals in runs.items():
        if vals:
            out[f"{name}_s"] = statistics.median(v[0] for v in vals)
            out[f"{name}_cpu_s"] = statistics.median(v[1] for v in vals)
    out["repeats"] = args.repeats
    if T > args.monolithic_max:  # the monolithic graph would not fit beside the others' jobs: layerwise is "1 backward"
        out["backward_s"], out["backward_cpu_s"], out["backward_is_layerwise"] = out["layerwise_s"], out["layerwise_cpu_s"], True
    out["graph_x_backward"] = out["graph_s"] / out["backward_s"]
    out["graph_cpu_x_backward"] = out["graph_cpu_s"] / out["backward_cpu_s"]
    out.setdefault("delta", g.meta["delta"])
    out["methods"] = g.run.methods
    out["n_targets"] = g.run.n_targets
    out["subgraph"] = {"nodes": g.n_nodes, "edges": g.n_edges}
    out["kept_edges"] = sum(t["kept"] for t in g.transitions)
    out["total_edges"] = sum(t["total"] for t in g.transitions)
    if args.no_reference:
        return out

    # ---- references on sampled transitions
    arch = architecture_of(model)
    L = model.config.num_hidden_layers
    sample_layers = sorted({0, L // 2, L - 1})
    n_t = g.run.n_targets
    stats = {k: {"packed_s": 0.0, "packed_cpu_s": 0.0, "packed_n": 0, "naive_s": 0.0, "naive_cpu_s": 0.0, "naive_n": 0, "err": 0.0}
             for k in ("attn", "mlp")}
    B_used = {}

    with Composite(model, "attnlrp", arch) as comp:
        modules = dict(model.named_modules())
        applied = {id(modules[n]): r for n, r in comp.applied.items()}
        rec = record_forward(model, ids, arch)
        g_final, _ = objective_gradient(model, arch, rec.final, T - 1, target, contrast)

        def on_block(step):
            if step.index not in sample_layers:
                return
            mid_module = step.layer.get_submodule(arch.mid)
            r_mid = (step.mid.detach()[0] * step.g_mid[0]).sum(-1)
            r_out = (rec.hidden(step.index + 1)[0] * step.g_out[0]).sum(-1)
            for kind, r_t, g_t in (("attn", r_mid, step.g_mid), ("mlp", r_out, step.g_out)):
                tg = torch.nonzero(r_t.abs() >= 0.01).reshape(-1)
                if tg.numel() == 0:
                    continue
                B = args.batch_size or auto_batch_size(model, T, tg.numel())
                B_used[kind] = B
                sample = tg[-min(tg.numel(), max(B, args.packed_sample)) :]
                E.naive_rows(step.layer, mid_module, step.x, step.args, step.kwargs, kind, g_t, tg[-1:])  # warm-up
                _, dt, dc = timed(lambda: E.packed_rows(step.layer, mid_module, step.x, step.args, step.kwargs, kind, g_t, sample, B))
                chk = sample[-min(8, sample.numel()) :]
                rows_p = E.packed_rows(step.layer, mid_module, step.x, step.args, step.kwargs, kind, g_t, chk, B)
                stats[kind]["packed_s"] += dt
                stats[kind]["packed_cpu_s"] += dc
                stats[kind]["packed_n"] += int(sample.numel())
                few = tg[-min(tg.numel(), args.naive_sample) :]
                _, dt, dc = timed(lambda: E.naive_rows(step.layer, mid_module, step.x, step.args, step.kwargs, kind, g_t, few))
                stats[kind]["naive_s"] += dt
                stats[kind]["naive_cpu_s"] += dc
                stats[kind]["naive_n"] += int(few.numel())
                if kind == "attn":
                    fast = A.closed_form_attention_rows(model, step.layer, mid_module, step.x.detach(), step.args, step.kwargs, step.g_mid, chk, applied)
                else:
                    fast = torch.zeros(chk.numel(), T)
                    fast[torch.arange(chk.numel()), chk] = E.mlp_diagonal_rows(r_mid, chk)
                err = float((fast - rows_p).abs().max() / (rows_p.abs().max() + 1e-12))
                stats[kind]["err"] = max(stats[kind]["err"], err)

        backward_blocks(model, rec, g_final, arch=arch, on_block=on_block)

    tot = {"packed_s": 0.0, "packed_cpu_s": 0.0, "naive_s": 0.0, "naive_cpu_s": 0.0}
    for index, n in n_t.items():
        st = stats["attn" if index % 2 == 0 else "mlp"]
        if st["packed_n"]:
            for key in ("packed_s", "packed_cpu_s"):
                tot[key] += n * st[key] / st["packed_n"]
            for key in ("naive_s", "naive_cpu_s"):
                tot[key] += n * st[key] / st["naive_n"]
    out["batch_size"] = B_used
    out["packed_extrap_s"], out["packed_extrap_cpu_s"] = tot["packed_s"], tot["packed_cpu_s"]
    out["naive_extrap_s"], out["naive_extrap_cpu_s"] = tot["naive_s"], tot["naive_cpu_s"]
    out["speedup_naive_over_packed"] = tot["naive_cpu_s"] / tot["packed_cpu_s"] if tot["packed_cpu_s"] else None
    out["speedup_packed_over_graph"] = tot["packed_cpu_s"] / out["graph_cpu_s"]
    out["packed_x_backward"] = tot["packed_cpu_s"] / out["backward_cpu_s"]
    out["max_rel_err_vs_packed"] = {k: v["err"] for k, v in stats.items()}
    out["per_target_s"] = {k: {"packed": v["packed_s"] / max(v["packed_n"], 1), "naive": v["naive_s"] / max(v["naive_n"], 1)} for k, v in stats.items()}
    return out


def child_longest(args) -> dict:
    import torch

    from lm_eval_lrp.lrp import explain

    model, tok = load()
    T = args.length
    ids = prompt(tok, T)
    explain(model, ids[:16], -1, 1, 2, recompute=True)
    e, wall, cpu = timed(lambda: explain(model, ids, -1, 30, 31, recompute=True))
    return {"length": T, "layerwise_s": wall, "layerwise_cpu_s": cpu, "peak_mib": peak_mib(),
            "finite": e.finite, "threads": torch.get_num_threads()}


# ----------------------------------------------------------------------------- parent


def run_child(kind: str, length: int, args, timeout: float | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--length", str(length),
           "--monolithic-max", str(args.monolithic_max), "--repeats", str(args.repeats if length <= 1024 else 1),
           "--naive-sample", str(args.naive_sample), "--packed-sample", str(args.packed_sample)]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    if kind == "graph" and (args.no_reference or length > args.reference_max):
        cmd.append("--no-reference")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error"}
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"length": length, "error": f"timed out after {time.time() - t0:.0f} s"}
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"length": length, "error": (proc.stderr or proc.stdout)[-800:]}
    return json.loads(lines[-1])


def fmt(x, spec=".1f", dash="–"):
    return dash if x is None else format(x, spec)


def table(rows: list[dict]) -> str:
    head = ("| T | 1 backward s (CPU s) | layerwise s | graph s (CPU s) | graph ÷ backward wall / CPU | seed paper s (×bwd) | "
            "batch-packed CPU s, extrap. (×bwd) | naive CPU s, extrap. | naive ÷ packed (B) | packed ÷ ours | "
            "max rel. err vs packed | peak RSS MiB |")
    out = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['length']} | error: {r['error'].splitlines()[-1] if r['error'] else '?'} |")
            continue
        T = r["length"]
        paper = f"{SEED_PAPER_S[T]:.1f} ({SEED_PAPER_X[T]}×)" if T in SEED_PAPER_S else "–"
        err = r.get("max_rel_err_vs_packed")
        err_s = f"attn {err['attn']:.1e}, mlp {err['mlp']:.1e}" if err else "–"
        B = r.get("batch_size", {})
        pk = r.get("packed_extrap_cpu_s")
        pk_s = f"{pk:.0f} ({r['packed_x_backward']:.0f}×)" if pk else "–"
        star = "*" if r.get("backward_is_layerwise") else ""
        out.append(
            f"| {T} | {r['backward_s']:.2f}{star} ({r['backward_cpu_s']:.2f}) | {r['layerwise_s']:.2f} | "
            f"{r['graph_s']:.2f} ({r['graph_cpu_s']:.2f}) | "
            f"{r['graph_x_backward']:.2f}× / {r['graph_cpu_x_backward']:.2f}× | {paper} | "
            f"{pk_s} | {fmt(r.get('naive_extrap_cpu_s'), '.0f')} | "
            f"{fmt(r.get('speedup_naive_over_packed'), '.2f')} (B={B.get('attn', '–')}) | "
            f"{fmt(r.get('speedup_packed_over_graph'), '.0f')}× | {err_s} | {r['graph_peak_mib']:.0f} |"
        )
    if any(r.get("backward_is_layerwise") for r in rows):
        out.append("\n\\* 1 backward = the layerwise backward at this length (explain() not run).")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=lambda s: [] if s in ("", "none") else [int(x) for x in s.split(",")], default=None,
                   help="comma-separated lengths for the graph table ('none': only --longest)")
    p.add_argument("--full", action="store_true", help="also 1024 and 4096 tokens")
    p.add_argument("--longest", action="store_true", help="single layerwise backward at 8192 and 16384 tokens")
    p.add_argument("--longest-sizes", type=lambda s: [int(x) for x in s.split(",")], default=list(LONGEST))
    p.add_argument("--time-limit", type=float, default=1800, help="seconds per child process (default 1800)")
    p.add_argument("--naive-sample", type=int, default=6, help="targets per sampled transition for the naive reference")
    p.add_argument("--packed-sample", type=int, default=0, help="targets per sampled transition for batch-packing (default: B)")
    p.add_argument("--reference-max", type=int, default=1024, help="no packed/naive references above this length")
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--monolithic-max", type=int, default=2048,
                   help="above this length '1 backward' is the layerwise one (explain() keeps every block's graph)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per length, medians reported (default 3)")
    p.add_argument("--json", help="write all results to this file")
    p.add_argument("--child", choices=("graph", "longest"), help=argparse.SUPPRESS)
    p.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        result = (child_graph if args.child == "graph" else child_longest)(args)
        print(json.dumps(result), flush=True)
        return 0

    sizes = args.sizes if args.sizes is not None else (list(DEFAULT) + (list(FULL) if args.full else []))
    rows = []
    for T in sizes:
        r = run_child("graph", T, args, args.time_limit)
        rows.append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)
    longest = []
    if args.longest:
        for T in args.longest_sizes:
            r = run_child("longest", T, args, args.time_limit)
            longest.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
            if "error" in r:
                break
    if rows:
        print(table(rows))
    if longest:
        print("\nLongest single contrastive backward (layerwise recomputation):")
        for r in longest:
            if "error" in r:
                print(f"  {r['length']} tokens: {r['error'].splitlines()[-1]}")
            else:
                print(f"  {r['length']} tokens: {r['layerwise_s']:.0f} s wall ({r['layerwise_cpu_s']:.0f} s CPU), "
                      f"peak RSS {r['peak_mib']:.0f} MiB, finite={r['finite']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"graph": rows, "longest": longest}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
