"""Node-relevance sidecars: a batch of records shares one file; one record alone, and old runs, keep one file each;
records held for a batch are all written when the writer is closed (a run stopped by Ctrl-C loses none)."""

from __future__ import annotations

import json

import pytest
import torch

from lm_eval_lrp.artifacts import AttributionWriter, load_node_relevance, read_records

NAMES = ["embed", "0.mid", "0.out"]


def _record(doc_id: int) -> dict:
    return {"task": "t", "doc_id": doc_id, "status": "attributed", "input_relevance": [0.5, -0.25]}


def _nodes(doc_id: int, tokens: int = 2) -> torch.Tensor:
    return torch.arange(3 * tokens, dtype=torch.float32).reshape(3, tokens) + doc_id


def test_a_batch_shares_one_file_and_each_record_reads_its_own(tmp_path):
    path = tmp_path / "attributions_t_2026-01-01T00-00-00.jsonl"
    with AttributionWriter(path, hold=4) as w:
        for doc_id, tokens in ((4, 2), (7, 5), (9, 3)):
            w.write(_record(doc_id), _nodes(doc_id, tokens), NAMES)
        assert not path.exists()  # held: nothing written before the batch is complete...
        w.write(_record(11))  # ...the fourth record (one without nodes: the hold counts records) completes it
    records = read_records(path)
    assert [r["doc_id"] for r in records] == [4, 7, 9, 11]
    files = sorted(p.name for p in path.with_suffix(".nodes").iterdir())
    assert files == ["nodes_4-9.safetensors"]
    for r, tokens in zip(records[:3], (2, 5, 3)):
        assert r["node_relevance_key"] == str(r["doc_id"])
        names, nodes = load_node_relevance(tmp_path, r)
        assert names == NAMES and torch.equal(nodes, _nodes(r["doc_id"], tokens))
    assert "node_relevance_file" not in records[3] and load_node_relevance(tmp_path, records[3]) is None


def test_one_record_alone_keeps_the_old_file_and_old_runs_read(tmp_path):
    path = tmp_path / "attributions_t_2026-01-01T00-00-00.jsonl"
    with AttributionWriter(path) as w:
        w.write(_record(3), _nodes(3), NAMES)
    (rec,) = read_records(path)
    assert rec["node_relevance_file"].endswith(".nodes/3.safetensors") and "node_relevance_key" not in rec
    assert load_node_relevance(tmp_path, rec)[0] == NAMES


def test_held_records_are_written_when_the_run_is_interrupted(tmp_path):
    path = tmp_path / "attributions_t_2026-01-01T00-00-00.jsonl"
    w = AttributionWriter(path, hold=8)
    with pytest.raises(KeyboardInterrupt):
        try:
            for doc_id in range(5):
                w.write(_record(doc_id), _nodes(doc_id), NAMES)
            raise KeyboardInterrupt
        finally:
            w.close()  # as the harness does in its finally
    records = read_records(path)
    assert [r["doc_id"] for r in records] == list(range(5))
    assert all(load_node_relevance(tmp_path, r) is not None for r in records)


def test_a_resumed_batch_never_overwrites_an_earlier_file(tmp_path):
    path = tmp_path / "attributions_t_2026-01-01T00-00-00.jsonl"
    for _ in range(2):
        with AttributionWriter(path, hold=2) as w:
            w.write(_record(1), _nodes(1), NAMES)
            w.write(_record(2), _nodes(2), ["other"])
    records = read_records(path)
    assert len({r["node_relevance_file"] for r in records}) == 2
    assert load_node_relevance(tmp_path, records[1])[0] == ["other"]  # its own names, kept in the metadata
    assert load_node_relevance(tmp_path, records[0])[0] == NAMES


def test_the_lines_are_the_strict_json_of_the_records(tmp_path):
    path = tmp_path / "attributions_t_2026-01-01T00-00-00.jsonl"
    with AttributionWriter(path, hold=2) as w:
        w.write({**_record(1), "tokens": ["é", "🙂"]})
        w.write({**_record(2), "delta": float("nan")})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == json.dumps({**_record(1), "tokens": ["é", "🙂"]}, ensure_ascii=False, separators=(",", ":"))
    assert json.loads(lines[1])["delta"] is None


def _parts(data: bytes) -> tuple:
    n = int.from_bytes(data[:8], "little")
    return n, json.loads(data[8 : 8 + n]), data[8 + n :]


@pytest.mark.parametrize("extra_names", [0, 1, 3])
def test_the_hand_written_file_is_what_safetensors_writes(tmp_path, extra_names):
    """save_float32 = safetensors' save_file: byte for byte with one metadata entry; with several, the same header
    (save_file leaves them in hash order, save_float32 sorts them) and the same tensor bytes."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from lm_eval_lrp.safetensors_file import save_float32

    gen = torch.Generator().manual_seed(extra_names)
    tensors = {str(k): torch.randn(5, 3 + k % 7, generator=gen) for k in (0, 3, 10, 17, 9, 100)}
    tensors["node_relevance"] = torch.randn(2, 4, generator=gen, dtype=torch.float64)  # converted to float32
    tensors["empty"] = torch.zeros(0, 3)
    tensors["scalar"] = torch.tensor(1.5)
    tensors["strided"] = torch.randn(6, 4, generator=gen)[:, ::2]
    metadata = {"node_names": json.dumps(["model.layers.0.self_attn", "é \n \x01 / \" \\ 日本"])}
    for key in list(tensors)[:extra_names]:
        metadata[f"node_names/{key}"] = json.dumps(["other", key])
    theirs_path, ours_path = str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")
    save_file({k: t.float().contiguous() for k, t in tensors.items()}, theirs_path, metadata=metadata)
    save_float32(tensors, ours_path, metadata=metadata)
    theirs, ours = (tmp_path / "a.safetensors").read_bytes(), (tmp_path / "b.safetensors").read_bytes()
    assert _parts(ours) == _parts(theirs)
    if extra_names == 0:
        assert ours == theirs
    with safe_open(str(tmp_path / "b.safetensors"), framework="pt") as fh:
        assert fh.metadata() == metadata
        for key, tensor in tensors.items():
            assert torch.equal(fh.get_tensor(key), tensor.float())
    save_file({"node_relevance": tensors["0"]}, str(tmp_path / "c.safetensors"))
    save_float32({"node_relevance": tensors["0"]}, str(tmp_path / "d.safetensors"))
    assert (tmp_path / "c.safetensors").read_bytes() == (tmp_path / "d.safetensors").read_bytes()
