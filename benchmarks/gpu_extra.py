"""The device check's second part (issue 24), run by ``benchmarks/gpu_check.sh`` after ``gpu_check.py``.

On the Llama-3.2-1B-shaped model (random weights, bfloat16; ``--small``: the 2-layer toy) saved with a byte-level BPE
tokenizer, each against its plain counterpart in this same run:

1. **harness ÷ engine**: ``benchmarks/harness_rate.py`` (the harness's whole attribution step against
   ``explain_many`` on the same failures, same batch size, interleaved rounds);
2. **batched rollouts**: ``benchmarks/rollout_rate.py`` (every rollout of a failure in one batch against one position
   at a time; records equal);
3. **a model split over GPU and CPU**: lm-eval with ``--model_args parallelize=True,max_memory_per_gpu=...`` (accelerate
   puts the layers that do not fit on the CPU and streams them), plain and ``--lrp``, and the split ``--lrp`` records
   against those of the same model on the GPU alone (Δℓ and relevance);
4. **generate_until**: gsm8k (50 documents, the rows carried in ``.whl/gsm8k_test.jsonl`` by ``gpu_wheels.sh``) plain
   and ``--lrp``.

Every part is cut at its own time limit so that the whole check stays under 8 minutes; a part that fails or runs out
of time is reported and makes the exit status 1. Figures go to the JSON report (``--out``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _common as common  # noqa: E402
import gpu_check  # noqa: E402

GSM8K_ROWS = HERE.parent / ".whl" / "gsm8k_test.jsonl"


def model_folder(root: Path, small: bool, device: str, extra_text: list[str]) -> Path:
    """The Llama-shaped model of gpu_check.py, its tokenizer trained on the check's words and ``extra_text``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    config = next(iter(gpu_check.configs(small).values()))
    out = root / "model"
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    corpus = [" ".join(gpu_check.WORDS)] * 4 + ["Question: Answer:\n 0123456789?$#"] + extra_text
    tk.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=min(2000, config.vocab_size),
                                                       special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>")
    config.bos_token_id = config.eos_token_id = config.pad_token_id = 0
    model = gpu_check.build(config, device, torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    return out


def _script(name: str, args: list[str], timeout: float, out_json: Path) -> dict:
    """Run one benchmark script (a subprocess, its own time limit); its JSON result or the failure."""
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(HERE / name), *args, "--out", str(out_json)], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"{name}: cut at {timeout:.0f} s", flush=True)
        return {"error": f"cut at {timeout:.0f} s"}
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-6:])
    print(tail, flush=True)
    if proc.returncode != 0 or not out_json.exists():
        return {"error": f"exit {proc.returncode}", "tail": tail}
    result = json.loads(out_json.read_text())
    result["wall_s"] = time.perf_counter() - t
    return result


def _cli(root: Path, tag: str, args: list[str], timeout: float) -> dict:
    t = time.perf_counter()
    try:
        out = common.timed_cli([*args, "--output_path", str(root / tag)], root / f"{tag}.json", root / f"{tag}.log",
                               timeout=timeout)
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        return {"error": str(err)[-2000:]}
    out["wall_s"] = time.perf_counter() - t
    out["output"] = str(root / tag)
    return out


def split_over_gpu_and_cpu(root: Path, model: Path, tasks: Path, args, budget: float) -> dict:
    """Plain and --lrp with the model split over GPU and CPU, and --lrp on the GPU alone: ratios and equality."""
    import torch

    size = sum(f.stat().st_size for f in model.glob("*.safetensors"))
    per_gpu = max(size // 2, 64 * 2**20)  # about half the weights on the GPU, the rest on the CPU
    base = ["--model", "hf", "--include_path", str(tasks), "--tasks", "gpu_mc", "--device", args.device,
            "--batch_size", "16", "--limit", str(args.split_docs)]
    split = f"pretrained={model},dtype=bfloat16,parallelize=True,max_memory_per_gpu={per_gpu},max_cpu_memory={4 * size}"
    whole = f"pretrained={model},dtype=bfloat16"
    lrp = ["--lrp", "--lrp_batch_size", "8"]
    runs = {}
    for tag, model_args, extra in (("split_plain", split, []), ("split_lrp", split, lrp), ("gpu_lrp", whole, lrp)):
        left = budget - sum(r.get("wall_s", 0) for r in runs.values())
        if left < 20:
            runs[tag] = {"error": "no time left"}
            break
        runs[tag] = _cli(root, tag, [*base[:2], "--model_args", model_args, *base[2:], *extra], left)
    result: dict = {"bytes_of_weights": size, "max_memory_per_gpu": per_gpu, "runs": runs,
                    "cuda": torch.cuda.is_available()}
    if any("error" in r for r in runs.values()):
        return result
    result["evaluate_ratio"] = runs["split_lrp"]["evaluate_s"] / runs["split_plain"]["evaluate_s"]
    a = {r["doc_id"]: r for r in common.records(Path(runs["split_lrp"]["output"]), "gpu_mc")}
    b = {r["doc_id"]: r for r in common.records(Path(runs["gpu_lrp"]["output"]), "gpu_mc")}
    same = a.keys() == b.keys()
    deltas = [abs(a[k]["delta"] - b[k]["delta"]) for k in a if same and a[k].get("delta") is not None]
    rel = [max(abs(x - y) for x, y in zip(a[k]["input_relevance"], b[k]["input_relevance"]))
           / max(1e-9, max(abs(y) for y in b[k]["input_relevance"]))
           for k in a if same and a[k].get("input_relevance") and b[k].get("input_relevance")]
    result.update(records=len(a), same_documents=same, max_abs_delta_diff=max(deltas, default=None),
                  max_rel_relevance_diff=max(rel, default=None))
    return result


def gsm8k(root: Path, model: Path, args, budget: float) -> dict:
    """gsm8k (the carried test rows, first ``--gsm8k_docs`` documents), plain and --lrp."""
    import lm_eval

    stock = Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / "gsm8k.yaml"
    tasks = root / "gsm8k_tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "gsm8k.yaml").write_text(
        f"include: {stock}\ntask: gsm8k\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    train: {GSM8K_ROWS}\n    test: {GSM8K_ROWS}\n")
    base = ["--model", "hf", "--model_args", f"pretrained={model},dtype=bfloat16", "--include_path", str(tasks),
            "--tasks", "gsm8k", "--device", args.device, "--batch_size", "32", "--limit", str(args.gsm8k_docs),
            "--gen_kwargs", f"max_gen_toks={args.gen_tokens}"]
    lrp = ["--lrp", "--lrp_rollout_tokens", str(args.gen_tokens)]
    runs = {}
    for tag, extra in (("gsm8k_plain", []), ("gsm8k_lrp", lrp)):
        left = budget - sum(r.get("wall_s", 0) for r in runs.values())
        if left < 20:
            runs[tag] = {"error": "no time left"}
            break
        runs[tag] = _cli(root, tag, [*base, *extra], left)
    result: dict = {"docs": args.gsm8k_docs, "max_gen_toks": args.gen_tokens, "runs": runs}
    if not any("error" in r for r in runs.values()):
        recs = common.records(Path(runs["gsm8k_lrp"]["output"]), "gsm8k")
        result.update(evaluate_ratio=runs["gsm8k_lrp"]["evaluate_s"] / runs["gsm8k_plain"]["evaluate_s"],
                      process_ratio=runs["gsm8k_lrp"]["wall_s"] / runs["gsm8k_plain"]["wall_s"], failures=len(recs),
                      by_status={s: sum(r["status"] == s for r in recs) for s in ("attributed", "skipped", "error")},
                      locators=sorted({str(r.get("locator")) for r in recs}))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="the 2-layer toy (default with --device cpu)")
    ap.add_argument("--budget", type=float, default=170, help="seconds for all four parts (default 170)")
    ap.add_argument("--split_docs", type=int, default=60)
    ap.add_argument("--gsm8k_docs", type=int, default=50)
    ap.add_argument("--gen_tokens", type=int, default=64, help="gsm8k max_gen_toks and --lrp_rollout_tokens")
    ap.add_argument("--out", default="gpu_extra.json")
    args = ap.parse_args(argv)
    small = args.small or args.device == "cpu"
    start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="gpu_extra_"))
    extra_text = []
    if GSM8K_ROWS.exists():
        extra_text = [json.loads(line)["question"] for line in GSM8K_ROWS.read_text().splitlines()[:200]]
    model = model_folder(root, small, args.device, extra_text)
    tasks = gpu_check.write_task(root, max(args.split_docs, 100))
    report: dict = {"small": small, "device": args.device}
    dtype = "bfloat16"
    shares = {"harness_rate": 0.25, "rollouts": 0.15, "split": 0.35, "gsm8k": 0.25}
    left = lambda: args.budget - (time.perf_counter() - start)  # noqa: E731

    print("\n== harness ÷ engine (benchmarks/harness_rate.py)", flush=True)
    report["harness_rate"] = _script("harness_rate.py", [
        "--model", str(model), "--device", args.device, "--dtype", dtype, "--docs", "200", "--rounds", "3",
        "--batch_size", "32", "--eval_batch_size", "32", "--threads", "0"],
        min(left(), shares["harness_rate"] * args.budget), root / "harness_rate.json")
    print("\n== batched rollouts (benchmarks/rollout_rate.py)", flush=True)
    report["rollouts"] = _script("rollout_rate.py", [
        "--model", str(model), "--device", args.device, "--failures", "4", "--rounds", "2", "--threads", "0"],
        min(left(), shares["rollouts"] * args.budget), root / "rollout_rate.json")
    print("\n== a model split over GPU and CPU (parallelize=True, max_memory_per_gpu)", flush=True)
    if args.device.startswith("cuda"):
        report["split"] = split_over_gpu_and_cpu(root, model, tasks, args, min(left(), shares["split"] * args.budget))
    else:  # accelerate splits over GPUs and the CPU; on the CPU alone tests/test_device_map.py covers offloading
        report["split"] = {"skipped": "needs a GPU"}
    print(json.dumps({k: v for k, v in report["split"].items() if k != "runs"}), flush=True)
    print("\n== gsm8k (generate_until), plain and --lrp", flush=True)
    try:
        import lm_eval  # noqa: F401
    except ImportError as err:
        report["gsm8k"] = {"error": f"lm-eval cannot be imported: {err}"}
    else:
        if GSM8K_ROWS.exists():
            report["gsm8k"] = gsm8k(root, model, args, max(0.0, left()))
        else:
            report["gsm8k"] = {"error": f"{GSM8K_ROWS} missing: run benchmarks/gpu_wheels.sh here and carry .whl"}
    print(json.dumps({k: v for k, v in report["gsm8k"].items() if k != "runs"}), flush=True)
    report["seconds"] = time.perf_counter() - start
    failed = [k for k in ("harness_rate", "rollouts", "split", "gsm8k") if "error" in report[k]
              or any("error" in r for r in report[k].get("runs", {}).values())]
    report["failed"] = failed
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    print(f"\n== summary: harness ÷ engine {report['harness_rate'].get('ratio', float('nan')):.2f}; batched rollouts "
          f"{report['rollouts'].get('ratio', float('nan')):.2f}× one position at a time; split GPU+CPU --lrp ÷ plain "
          f"{report['split'].get('evaluate_ratio', float('nan')):.2f}× (records vs GPU alone: max |ΔΔℓ| "
          f"{report['split'].get('max_abs_delta_diff')}); gsm8k --lrp ÷ plain "
          f"{report['gsm8k'].get('evaluate_ratio', float('nan')):.2f}× (evaluate), "
          f"{report['gsm8k'].get('process_ratio', float('nan')):.2f}× (process); "
          f"{'failed: ' + ', '.join(failed) if failed else 'all parts ran'} in {report['seconds']:.0f} s; report {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
