"""A short real run: SmolLM2-135M-Instruct (GGUF) on the stock arc_easy task with local data, through the CLI."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

import tiny_harness as th

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _write_local_tasks(out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("make_tasks", ROOT / "examples" / "local_tasks" / "make_tasks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_tasks"] = module
    spec.loader.exec_module(module)
    return module.write_local_tasks(out, tasks=["arc_easy"])


def test_smollm2_arc_easy_run(tmp_path):
    tasks = _write_local_tasks(tmp_path / "tasks")
    out = tmp_path / "out"
    args = ["--model", "hf", "--model_args",
            f"pretrained={th.smollm2_dir()},gguf_file={th.SMOLLM2_GGUF},dtype=float32",
            "--include_path", str(tasks), "--tasks", "arc_easy", "--limit", "12", "--device", "cpu",
            "--log_samples", "--output_path", str(out), "--lrp"]
    proc = th.run_cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    import lm_eval_lrp

    run = lm_eval_lrp.load_run(out)
    wrong = {s["doc_id"] for s in th.samples(out, "arc_easy") if s["acc"] < 1}
    records = run["arc_easy"].records
    assert {r["doc_id"] for r in records} == wrong
    summary = run.results["lrp"]["tasks"]["arc_easy"]
    assert summary["failures"] == len(wrong)
    for r in run["arc_easy"].attributed:
        assert r["delta"] > 1.0  # the paper's clean-case filter
        assert r["delta"] == pytest.approx(r["target"]["logit"] - r["contrast"]["logit"], abs=1e-3)
        assert all(math.isfinite(x) for x in r["input_relevance"])
        assert math.isfinite(r["conservation"]["ratio"])
    for r in records:
        if r["status"] == "skipped":
            assert r["reason"]
    print("arc_easy acc", run.results["results"]["arc_easy"]["acc,none"], "lrp summary", summary)
