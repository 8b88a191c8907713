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
import torch

import tiny_harness as th


_TIMES = ("seconds", "seconds_total", "timings", "node_relevance_file")  # wall clock, and the file's own name


def _same(a, b, where="record"):
    """``a`` equals ``b`` in every field but wall-clock times: numbers to float rounding, the rest exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = {k for k in (*a, *b) if k not in _TIMES}
        assert keys <= set(a) and keys <= set(b), f"{where}: fields differ: {sorted(set(a) ^ set(b))}"
        for k in keys:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5), f"{where}: {a} vs {b}"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


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

    r1, r2 = th.results_json(one), th.results_json(two)
    assert r1["results"] == r2["results"]
    run1, run2 = lm_eval_lrp.load_run(one), lm_eval_lrp.load_run(two)
    for task in ("tiny_mc", "tiny_gen"):
        one_by_doc, two_by_doc = run1[task].by_doc_id(), run2[task].by_doc_id()
        assert one_by_doc and sorted(one_by_doc) == sorted(two_by_doc)
        for doc_id, record in one_by_doc.items():  # every field: relevance, tokens, locate block, conservation ...
            _same(record, two_by_doc[doc_id], f"{task} doc {doc_id}")
            nodes1, nodes2 = run1[task].node_relevance(record), run2[task].node_relevance(two_by_doc[doc_id])
            if nodes1 is not None or nodes2 is not None:
                assert nodes1[0] == nodes2[0] and torch.allclose(nodes1[1], nodes2[1], rtol=1e-4, atol=1e-5)
        # one merged artifact per task, no shards left behind, node relevance loads
        sub = th.model_dir(two)
        assert len(list(sub.glob(f"attributions_{task}_*.jsonl"))) == 1
        assert not list(sub.glob("*.rank*"))
        rec = run2[task].attributed[0]
        assert run2[task].node_relevance(rec)[1].shape[1] == len(rec["tokens"])
