"""The prepared device check of GPU-ready attribution (run through ``benchmarks/gpu_check.sh``; CI never runs it).

Needs torch and transformers only (no network, no model download): the models are built from configs with random
weights, shaped like Llama-3.2-1B and Qwen3-1.7B (``--small``: 2-layer toys of the same families, for the CPU).
For each model, in float32 and in bfloat16, it prints:

1. forward equality: the logits of a plain no-grad forward against those of the forward under the LRP rules
   (recording a graph), which must be the model's own;
2. CP-LRP conservation: ΣR_input / Δℓ (1 for CP-LRP up to rounding) and AttnLRP's ratio beside it;
3. batched = single: ``explain_batch`` of mixed-length contrasts against ``explain`` one by one;
4. throughput: ``explain_many`` at batch sizes 1, 8, 32 and ``auto`` on ARC-like failures (~50 tokens), failures
   per second and peak device memory.

Then, if lm-eval can be imported (gpu_check.sh installs it from carried wheels), it times an lm-eval run of a local
multiple-choice task with and without ``--lrp`` (the same CLI a user runs) on the Llama-shaped model in bfloat16 and
prints the ``--lrp`` ÷ plain ratio of lm-eval's evaluate (model loading excluded) and of the whole process.

Exit status 1 if a check fails (thresholds in ``LIMITS``); every figure is printed either way and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

#: (float32, bfloat16) limits: forward |Δlogit| / max|logit|, |CP ratio − 1|, batched vs single relative difference
LIMITS = {"float32": (1e-5, 1e-3, 1e-4), "bfloat16": (2e-2, 5e-2, 5e-2)}


def configs(small: bool) -> dict:
    import transformers as tf

    if small:
        shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16, vocab_size=2048, max_position_embeddings=512)
        return {"llama-small": tf.LlamaConfig(**shape), "qwen3-small": tf.Qwen3Config(**shape)}
    return {
        "llama-3.2-1b-shaped": tf.LlamaConfig(
            hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
            num_key_value_heads=8, head_dim=64, vocab_size=128256, max_position_embeddings=131072,
            rms_norm_eps=1e-5, tie_word_embeddings=True),
        "qwen3-1.7b-shaped": tf.Qwen3Config(
            hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
            num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
            rms_norm_eps=1e-6, tie_word_embeddings=True),
    }


def build(config, device: str, dtype):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def arc_like(vocab: int, n: int, seed: int, lo: int = 40, hi: int = 60) -> list:
    """ARC-like failures: random prompts of ``lo``–``hi`` tokens, target and contrast two random tokens."""
    from lm_eval_lrp.lrp.target import Contrast

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ids = tuple(rng.randrange(3, vocab) for _ in range(rng.randint(lo, hi)))
        target, contrast = rng.sample(range(3, vocab), 2)
        out.append(Contrast(ids, -1, target, contrast))
    return out


# ----------------------------------------------------------------------------- checks on one model


def forward_equality(model, ids) -> float:
    """max |logits(plain) − logits(under the rules, graph recorded)| / max |logits|, last position."""
    import torch

    from lm_eval_lrp.lrp import Composite

    with torch.no_grad():
        plain = model(ids, use_cache=False).logits[:, -1].float()
    emb = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    with Composite(model, "attnlrp"), torch.enable_grad():
        ruled = model(inputs_embeds=emb, use_cache=False).logits[:, -1].detach().float()
    return float((plain - ruled).abs().max() / plain.abs().max())


def conservation(model, contrasts, rule: str) -> list[float]:
    from lm_eval_lrp.lrp import explain

    ratios = []
    for c in contrasts:
        e = explain(model, list(c.ids), c.position, c.target, c.contrast, rule=rule, nodes=False)
        ratios.append(e.conservation["ratio"])
    return ratios


def top_and_bottom(model, contrasts) -> list:
    """The same prompts with target = top token, contrast = least likely token: a large Δℓ."""
    import torch

    from lm_eval_lrp.lrp.target import Contrast

    out = []
    device = model.get_input_embeddings().weight.device
    with torch.no_grad():
        for c in contrasts:
            logits = model(torch.tensor([c.ids], device=device), use_cache=False).logits[0, -1]
            out.append(Contrast(c.ids, -1, int(logits.argmax()), int(logits.argmin())))
    return out


def batched_vs_single(model, contrasts) -> float:
    from lm_eval_lrp.lrp import explain
    from lm_eval_lrp.lrp.batched import explain_batch

    batch = explain_batch(model, contrasts)
    worst = 0.0
    for c, b in zip(contrasts, batch):
        s = explain(model, list(c.ids), c.position, c.target, c.contrast)
        worst = max(worst, float((b.input_relevance - s.input_relevance).abs().max() / s.input_relevance.abs().max()))
    return worst


def throughput(model, contrasts, sizes, device) -> list[dict]:
    import torch

    from lm_eval_lrp.lrp.batched import ExplainError, explain_many

    rows = []
    explain_many(model, contrasts[:8], batch_size=8)  # warm-up (kernels, allocator)
    for b in sizes:
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        sync(device)
        t = time.perf_counter()
        out = explain_many(model, contrasts, batch_size=b)
        sync(device)
        dt = time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated() / 2**20 if torch.device(device).type == "cuda" else float("nan")
        used = sorted({e.seconds.get("batch_size", 1) for e in out if not isinstance(e, ExplainError)})
        rows.append({"batch_size": b, "seconds": dt, "failures_per_s": len(contrasts) / dt, "peak_mib": peak,
                     "errors": sum(isinstance(e, ExplainError) for e in out), "batch_sizes_used": used})
    base = rows[0]["failures_per_s"]
    for row in rows:
        row["speedup"] = row["failures_per_s"] / base
    return rows


def _mib(x: float) -> str:
    return "n/a (CPU)" if x != x else f"{x:.0f} MiB"


def check_model(name, config, args, report) -> bool:
    import torch

    ok = True
    model = build(config, args.device, torch.float32)
    vocab = config.vocab_size
    for dtype_name in ("float32", "bfloat16"):
        if dtype_name == "bfloat16":
            model = model.to(torch.bfloat16)
        lim_fwd, lim_cp, lim_batch = LIMITS[dtype_name]
        t0 = time.perf_counter()
        ids = torch.tensor([c.ids for c in arc_like(vocab, 2, seed=1, lo=50, hi=50)], device=args.device)
        fwd = forward_equality(model, ids)
        probes = top_and_bottom(model, arc_like(vocab, args.probes, seed=2))
        cp = conservation(model, probes, "cp")
        attn = conservation(model, probes, "attnlrp")
        mixed = top_and_bottom(model, arc_like(vocab, 6, seed=3, lo=10, hi=60))
        batch_diff = batched_vs_single(model, mixed)
        rows = throughput(model, arc_like(vocab, args.failures, seed=4), args.sizes, args.device)
        cp_err = max(abs(r - 1) for r in cp)
        passed = {"forward": fwd <= lim_fwd, "cp_conservation": cp_err <= lim_cp, "batched": batch_diff <= lim_batch,
                  "no_errors": all(r["errors"] == 0 for r in rows)}
        ok &= all(passed.values())
        report.setdefault("models", {}).setdefault(name, {})[dtype_name] = {
            "forward_rel_diff": fwd, "cp_ratios": cp, "attnlrp_ratios": attn, "batched_rel_diff": batch_diff,
            "throughput": rows, "passed": passed, "seconds": time.perf_counter() - t0}
        print(f"\n== {name} {dtype_name} on {args.device} ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B "
              f"parameters)", flush=True)
        print(f"forward under the rules vs plain: max |Δlogit| / max |logit| = {fwd:.2e} "
              f"({'bit-identical' if fwd == 0 else 'differs'}) [{'ok' if passed['forward'] else 'FAIL'} ≤ {lim_fwd:g}]")
        print(f"CP-LRP  ΣR/Δℓ over {len(cp)} prompts: median {statistics.median(cp):.6f}, max |ratio − 1| "
              f"{cp_err:.2e} [{'ok' if passed['cp_conservation'] else 'FAIL'} ≤ {lim_cp:g}]; "
              f"AttnLRP median {statistics.median(attn):.4f}")
        print(f"batched (6 mixed lengths, one batch) vs single: max relative difference {batch_diff:.2e} "
              f"[{'ok' if passed['batched'] else 'FAIL'} ≤ {lim_batch:g}]")
        print(f"throughput, {args.failures} ARC-like failures (40–60 tokens):")
        for r in rows:
            print(f"  B={r['batch_size']!s:>4}: {r['failures_per_s']:8.2f} failures/s ({r['speedup']:.2f}× B=1), "
                  f"{r['seconds']:.2f} s, peak {_mib(r['peak_mib'])}, batches of {r['batch_sizes_used']}, "
                  f"errors {r['errors']}", flush=True)
    del model
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return ok


# ----------------------------------------------------------------------------- lm-eval with and without --lrp


WORDS = ("which property of a mineral can be determined just by looking at it luster mass weight hardness "
         "a student wants to find the volume of a rock plants need sunlight water and air to grow the moon "
         "orbits the earth because of gravity what causes the seasons on earth tilt of its axis").split()


def write_task(root: Path, n_docs: int) -> Path:
    rng = random.Random(0)
    rows = []
    for i in range(n_docs):
        question = " ".join(rng.choice(WORDS) for _ in range(rng.randint(18, 30))).capitalize() + "?"
        choices = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4))) for _ in range(4)]
        rows.append({"question": question, "choices": choices, "label": i % 4})
    (root / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sys.path.insert(0, str(HERE.parent / "tests"))
    from tiny_harness import MC_YAML  # the tests' local multiple-choice task (acc, acc_norm)

    tasks = root / "tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "gpu_mc.yaml").write_text(MC_YAML.replace("tiny_mc", "gpu_mc").format(data=root / "mc.jsonl"))
    return tasks


def write_model(root: Path, config, device: str) -> Path:
    """The Llama-shaped model (bfloat16, random weights) and a byte-level BPE tokenizer trained on the task's text."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    out = root / "model"
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator([" ".join(WORDS)] * 4 + ["Question: Answer:\n 0123456789?"],
                           trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>")
    config.bos_token_id = config.eos_token_id = config.pad_token_id = 0
    model = build(config, device, torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    return out


def lm_eval_ratio(config, args, report) -> bool:
    import _common as common  # benchmarks/_common.py: the timed CLI wrapper

    root = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    tasks = write_task(root, args.docs)
    model_dir = write_model(root, config, args.device)
    base = ["--model", "hf", "--model_args", f"pretrained={model_dir},dtype=bfloat16", "--include_path", str(tasks),
            "--tasks", "gpu_mc", "--device", args.device, "--batch_size", str(args.eval_batch_size)]
    runs = {}
    lrp = ["--lrp", "--lrp_batch_size", str(args.lrp_batch_size), *args.lrp_extra.split()]
    order = (("plain", []), ("lrp", lrp), ("lrp2", lrp), ("plain2", []))[: 2 * args.eval_repeats]
    for side, extra in order:
        out = root / side
        print(f"lm-eval run {len(runs) + 1}/{len(order)}: {'--lrp' if extra else 'plain'}", flush=True)
        try:
            runs[side] = common.timed_cli([*base, "--output_path", str(out), *extra], root / f"{side}.json",
                                          root / f"{side}.log")
        except RuntimeError as err:
            print(f"lm-eval run ({side}) failed: {err}")
            report["lm_eval"] = {"error": str(err)}
            return False
        runs[side]["failures"] = len(common.records(out, "gpu_mc"))
    best = {s: min((r for k, r in runs.items() if k.startswith(s)), key=lambda r: r["wall_s"]) for s in ("plain", "lrp")}
    ev = {s: best[s].get("evaluate_s") for s in best}
    ratio_eval = ev["lrp"] / ev["plain"] if ev["plain"] else float("nan")
    ratio_wall = best["lrp"]["wall_s"] / best["plain"]["wall_s"]
    report["lm_eval"] = {"docs": args.docs, "runs": runs, "evaluate_ratio": ratio_eval, "process_ratio": ratio_wall}
    print(f"\n== lm-eval, local multiple-choice task ({args.docs} docs, batch size {args.eval_batch_size}), "
          f"Llama-shaped bf16, {best['lrp']['failures']} failures attributed, --lrp_batch_size {args.lrp_batch_size} {args.lrp_extra}")
    print(f"evaluate: plain {ev['plain']:.2f} s, --lrp {ev['lrp']:.2f} s (attribution "
          f"{best['lrp'].get('attribution_s', float('nan')):.2f} s): --lrp ÷ plain = {ratio_eval:.2f}×")
    print(f"whole process (loading included): plain {best['plain']['wall_s']:.1f} s, --lrp {best['lrp']['wall_s']:.1f} s:"
          f" {ratio_wall:.2f}× (best of {args.eval_repeats} run(s) each{', ABBA order' if args.eval_repeats > 1 else ''})")
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="2-layer toy shapes (default with --device cpu)")
    ap.add_argument("--failures", type=int, help="ARC-like failures for the throughput (default 128; small 16)")
    ap.add_argument("--probes", type=int, default=3, help="prompts for the conservation check")
    ap.add_argument("--sizes", nargs="+", help="batch sizes for the throughput (default 1 8 32 auto)")
    ap.add_argument("--docs", type=int, help="documents of the lm-eval task (default 200; small 24)")
    ap.add_argument("--eval-batch-size", type=int, default=32)
    ap.add_argument("--eval-repeats", type=int, choices=(1, 2), help="runs of each side (default 2, ABBA; small 1)")
    ap.add_argument("--skip-lm-eval", action="store_true")
    ap.add_argument("--lrp-batch-size", default="1", help="--lrp_batch_size of the --lrp runs (default 1)")
    ap.add_argument("--lrp-extra", default="", help="more --lrp_* options for the --lrp runs (one string)")
    ap.add_argument("--only-lm-eval", action="store_true", help="only the lm-eval part (plain vs --lrp)")
    ap.add_argument("--out", default="gpu_check.json", help="JSON report (default ./gpu_check.json)")
    args = ap.parse_args(argv)
    import torch
    import transformers

    small = args.small or args.device == "cpu"
    args.failures = args.failures or (16 if small else 128)
    args.docs = args.docs or (24 if small else 200)
    args.eval_repeats = args.eval_repeats or (1 if small else 2)
    args.sizes = [s if s == "auto" else int(s) for s in (args.sizes or ["1", "8", "32", "auto"])]
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu (small shapes)")
        return 2
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"gpu_check: {name}; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{'small' if small else 'full'} shapes", flush=True)
    report = {"device": name, "torch": torch.__version__, "transformers": transformers.__version__, "small": small}
    start = time.perf_counter()
    ok = True
    cfgs = configs(small)
    for model_name, config in cfgs.items():
        if not args.only_lm_eval:
            ok &= check_model(model_name, config, args, report)
    if args.skip_lm_eval:
        print("\nlm-eval part skipped (--skip-lm-eval)")
    else:
        try:
            import lm_eval  # noqa: F401
        except ImportError as err:
            print(f"\nlm-eval part skipped: lm-eval cannot be imported ({err}); carry its wheels (benchmarks/README.md)")
            report["lm_eval"] = {"skipped": str(err)}
        else:
            ok &= lm_eval_ratio(next(iter(cfgs.values())), args, report)
    report["seconds"] = time.perf_counter() - start
    report["passed"] = bool(ok)
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    print(f"\ngpu_check {'PASSED' if ok else 'FAILED'} in {report['seconds']:.0f} s; report: {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
