"""Data parallel on CPU: two processes give the same records (as a set) and the same accuracy as one process.

lm-eval's HF model turns data parallelism on only when it counts GPUs, and ``accelerate launch --cpu`` starts a
single process here; ``torchrun`` with ``ACCELERATE_USE_CPU=true`` starts a real 2-process gloo group, and ``hf-lrp``
then splits the documents across ranks as lm-eval does on GPUs. Each rank writes a shard; rank 0 merges them.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import tiny_harness as th


def _key(r):
    return (r["doc_id"], r["status"], r.get("target", {}).get("id"), r.get("contrast", {}).get("id"),
            round(r.get("delta", 0.0), 4))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    return {"root": root, "model": th.build(root), "tasks": th.write_tasks(root)}


def _args(world, out):
    return ["--model", "hf", "--model_args", f"pretrained={world['model']}", "--include_path", str(world["tasks"]),
            "--tasks", "tiny_mc,tiny_gen", "--device", "cpu", "--output_path", str(out), "--lrp", "--lrp_min_delta", "0"]


def test_two_processes_equal_one(world):
    import lm_eval_lrp

    one = world["root"] / "one"
    proc = th.run_cli(_args(world, one), world["root"])
    assert proc.returncode == 0, proc.stderr[-3000:]

    two = world["root"] / "two"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "ACCELERATE_USE_CPU": "true",
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "lm_eval_lrp", *_args(world, two)]
    proc = subprocess.run(cmd, cwd=world["root"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4/4" in proc.stderr or "/4" in proc.stderr  # each rank attributed its own share

    r1, r2 = th.results_json(one), th.results_json(two)
    assert r1["results"] == r2["results"]
    run1, run2 = lm_eval_lrp.load_run(one), lm_eval_lrp.load_run(two)
    for task in ("tiny_mc", "tiny_gen"):
        assert {_key(r) for r in run1[task].records} == {_key(r) for r in run2[task].records}
        # one merged artifact per task, no shards left behind, node relevance loads
        sub = th.model_dir(two)
        assert len(list(sub.glob(f"attributions_{task}_*.jsonl"))) == 1
        assert not list(sub.glob("*.rank*"))
        rec = run2[task].attributed[0]
        assert run2[task].node_relevance(rec)[1].shape[1] == len(rec["tokens"])
