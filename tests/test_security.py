"""Artifacts are data: loading a run never unpickles or executes anything, and never reads outside the run folder."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from lm_eval_lrp.artifacts import AttributionWriter, load_run

STAMP = "2026-01-02T03-04-05.678901"


class _Payload:
    """Unpickling this creates a marker file: proof that something unpickled it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _run(tmp_path):
    run_dir = tmp_path / "run" / "model"
    record = {"task": "t", "doc_id": 0, "status": "attributed", "tokens": ["a", "b"], "input_relevance": [0.5, -0.25]}
    with AttributionWriter(run_dir / f"attributions_t_{STAMP}.jsonl") as w:
        w.write(record, torch.ones(3, 2), ["embed", "0.mid", "0.out"])
    return run_dir


def test_round_trip_is_json_and_safetensors(tmp_path):
    run = load_run(_run(tmp_path))
    (rec,) = run["t"].records
    names, nodes = run["t"].node_relevance(rec)
    assert names == ["embed", "0.mid", "0.out"] and nodes.tolist() == [[1.0, 1.0]] * 3


def test_a_pickle_in_place_of_a_sidecar_is_refused_not_run(tmp_path):
    run_dir = _run(tmp_path)
    marker = tmp_path / "UNPICKLED"
    sidecar = next(run_dir.glob("*.nodes")) / "0.safetensors"
    sidecar.write_bytes(pickle.dumps(_Payload(str(marker))))
    torch.save({"x": _Payload(str(marker))}, run_dir / "extra.pt")  # a stray pickle beside the records
    run = load_run(run_dir)
    with pytest.raises(Exception):
        run["t"].node_relevance(run["t"].records[0])
    assert not marker.exists()


def test_sidecar_path_outside_the_run_is_refused(tmp_path):
    run_dir = _run(tmp_path)
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes(next(run_dir.glob("*.nodes")).joinpath("0.safetensors").read_bytes())
    run = load_run(run_dir)
    rec = dict(run["t"].records[0], node_relevance_file=os.path.relpath(outside, run_dir))
    with pytest.raises(ValueError, match="outside the run folder"):
        run["t"].node_relevance(rec)
