"""Node-relevance sidecars: the per-layer relevance of records, in safetensors files beside the JSONL records.

A record written alone gets ``<doc_id>.safetensors`` (one tensor, ``node_relevance``), as every record did before
batches. Records written together (a batch of the harness) share one file, ``nodes_<first>-<last>.safetensors``,
one tensor per record named by its doc id; the record names its tensor in ``node_relevance_key``. Node names are the
file's metadata (``node_names``, or ``node_names/<key>`` for a record whose names differ from the file's).
Nothing here unpickles: safetensors only.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from .safetensors_file import save_float32

#: the tensor name of a one-record file (and of every file written before batches)
SINGLE_KEY = "node_relevance"


def write_sidecar(folder: Path, items: list[tuple[dict, torch.Tensor, list[str] | None]]) -> dict[int, dict]:
    """Write the node relevance of ``items`` ((record, node relevance, node names), at least one) into one file in
    ``folder``; returns, per item index, the fields its record gets (``node_relevance_file``, and
    ``node_relevance_key`` when the file holds several records)."""
    if len(items) == 1:
        record, nodes, names = items[0]
        file = folder / f"{record['doc_id']}.safetensors"
        save_float32({SINGLE_KEY: nodes}, str(file), metadata={"node_names": json.dumps(names or [])})
        return {0: {"node_relevance_file": f"{folder.name}/{file.name}"}}
    first, last = items[0][0]["doc_id"], items[-1][0]["doc_id"]
    file = folder / f"nodes_{first}-{last}.safetensors"
    n = 1
    while file.exists():  # a resumed run whose batch starts and ends at the same documents: never overwrite
        n += 1
        file = folder / f"nodes_{first}-{last}.{n}.safetensors"
    keys = [str(record["doc_id"]) for record, _, _ in items]
    if len(set(keys)) != len(keys):
        raise ValueError(f"two records of one batch have the same doc_id: {keys}")
    shared = json.dumps(items[0][2] or [])
    metadata = {"node_names": shared}
    for key, (_, _, names) in zip(keys, items):
        own = json.dumps(names or [])
        if own != shared:
            metadata[f"node_names/{key}"] = own
    save_float32({key: nodes for key, (_, nodes, _) in zip(keys, items)}, str(file), metadata=metadata)
    rel = f"{folder.name}/{file.name}"
    return {i: {"node_relevance_file": rel, "node_relevance_key": key} for i, key in enumerate(keys)}


def read_sidecar(run_dir: Path, record: dict) -> tuple[list[str], torch.Tensor] | None:
    """(node names, relevance ``[nodes, tokens]``) of ``record``, from a one-record or a batch file inside
    ``run_dir`` (None when it has none); a path that leads outside the run folder is refused."""
    rel = record.get("node_relevance_file")
    if not rel:
        return None
    root = Path(run_dir).resolve()
    file = (root / rel).resolve()
    if root not in file.parents:
        raise ValueError(f"node_relevance_file {rel!r} points outside the run folder {root}; not read")
    key = record.get("node_relevance_key") or SINGLE_KEY
    with safe_open(str(file), framework="pt") as fh:
        metadata = fh.metadata() or {}
        tensor = fh.get_tensor(key)
    names = json.loads(metadata.get(f"node_names/{key}", metadata.get("node_names", "[]")))
    return names, tensor
