"""Phase 5 under data parallelism: every rank wrote its own shard; rank 0 gathers the records and merges the shards."""

from __future__ import annotations

import os
from pathlib import Path

from ..artifacts import read_records, rewrite_records


def shard_path(final: Path, rank: int, world: int) -> Path:
    return final if world == 1 else final.with_name(final.stem + f".rank{rank}.jsonl")


def gather_records(subject, records: dict[str, list]) -> dict[str, list]:
    """Every rank's records on rank 0, per task in document order (other ranks get {})."""
    subject.barrier()
    gathered = subject.gather(records)
    if subject.rank != 0:
        return {}
    merged: dict[str, list] = {}
    for part in gathered:
        for name, recs in part.items():
            merged.setdefault(name, []).extend(recs)
    return {n: sorted(r, key=lambda x: x["doc_id"]) for n, r in merged.items()}


def merge_shards(files: dict[str, Path], world: int) -> None:
    """Rank 0: the shards of each task (and records kept by a resume) into the task's one file."""
    for final in files.values():
        shards = [shard_path(final, r, world) for r in range(world)]
        records = read_records(final) if final.exists() else []
        for shard in shards:
            if shard.exists():
                records.extend(read_records(shard))
        records.sort(key=lambda r: r["doc_id"])
        rewrite_records(final, records)
        for shard in shards:
            if shard.exists():
                os.remove(shard)
