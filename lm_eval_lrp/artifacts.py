"""Attribution artifacts beside lm-eval's output, and the loader that reads a run back.

Per task: ``attributions_<task>_<timestamp>.jsonl`` (one JSON record per failure, written and flushed one by one)
and, for per-layer node relevance, a sidecar folder ``attributions_<task>_<timestamp>.nodes/`` holding one
``<doc_id>.safetensors`` per record. Nothing here unpickles: JSON and safetensors only.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import jsonlines
import torch
from safetensors.torch import load_file, save_file

from .lmeval.results import locate, read_results
from .record import RECORD_GLOB, Record, RecordFormatError
RECORD_NAME = re.compile(r"^attributions_(?P<task>.+)_(?P<stamp>\d{4}-\d{2}-\d{2}T[\d\-\.]+)(?:\.rank(?P<rank>\d+))?\.jsonl$")


def _clean(value):
    """JSON-safe: NaN/inf become None (records with them are flagged, never silently written as numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class AttributionWriter:
    """Appends records to one task's JSONL file, flushing after each; node relevance goes to the sidecar. The file is
    opened at the first record: a run interrupted before any leaves no empty file behind."""

    def __init__(self, path: Path, sidecar: Path | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sidecar = Path(sidecar) if sidecar is not None else self.path.with_suffix(".nodes")
        self._fh = None  # opened at the first record: an interrupted run that wrote none leaves no empty file
        self._writer = None
        # the writer's own encoding, refusing NaN/inf: a finite record (nearly all) is written without a cleaning pass
        self._strict = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
        self.count = 0
        self._sidecar_made = False

    def write(self, record: dict, node_relevance: torch.Tensor | None = None, node_names: list[str] | None = None):
        if node_relevance is not None and node_relevance.numel():
            if not self._sidecar_made:
                self.sidecar.mkdir(exist_ok=True)
                self._sidecar_made = True
            file = self.sidecar / f"{record['doc_id']}.safetensors"
            save_file(
                {"node_relevance": node_relevance.contiguous().float()},
                str(file),
                metadata={"node_names": json.dumps(node_names or [])},
            )
            record = {**record, "node_relevance_file": f"{self.sidecar.name}/{file.name}"}
        if self._writer is None:
            self._fh = open(self.path, "a", encoding="utf-8")
            self._writer = jsonlines.Writer(self._fh, flush=True, compact=True)
        try:
            line = self._strict(record)
        except ValueError:  # NaN/inf somewhere: written as null (records with them are flagged as errors)
            self._writer.write(_clean(record))
        else:
            self._fh.write(line + "\n")
            self._fh.flush()
        self.count += 1

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_records(path: Path, warn: Callable[[str], None] | None = None) -> list[Record]:
    """Records of one JSONL file. Lines that are not records (a line torn by a killed run, garbage) are left out and
    named through ``warn`` (file and line number): the caller decides whether to say it."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(Record.load(json.loads(line)))
            except (json.JSONDecodeError, RecordFormatError) as err:
                if warn is not None:
                    warn(f"{path}:{number}: not an attribution record ({err}); left out")
    return out


def task_of(path: Path) -> str | None:
    """The task name of a merged attribution file (None for rank shards and other files)."""
    m = RECORD_NAME.match(Path(path).name)
    return m.group("task") if m and m.group("rank") is None else None


def rewrite_records(path: Path, records: list[dict]) -> None:
    """Replace a JSONL file's content atomically (resume drops a killed run's partial line and error records)."""
    tmp = Path(path).with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(_clean(r), ensure_ascii=False) + "\n")
    tmp.replace(path)


def load_node_relevance(run_dir: Path, record: dict) -> tuple[list[str], torch.Tensor] | None:
    rel = record.get("node_relevance_file")
    if not rel:
        return None
    root = Path(run_dir).resolve()
    file = (root / rel).resolve()
    if root not in file.parents:
        raise ValueError(f"node_relevance_file {rel!r} points outside the run folder {root}; not read")
    tensors = load_file(str(file))
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as fh:
        names = json.loads((fh.metadata() or {}).get("node_names", "[]"))
    return names, tensors["node_relevance"]


@dataclass
class TaskAttributions:
    task: str
    path: Path
    records: list[dict] = field(default_factory=list)

    @property
    def attributed(self) -> list[dict]:
        return [r for r in self.records if r.get("status") == "attributed"]

    def by_doc_id(self) -> dict[int, dict]:
        return {r["doc_id"]: r for r in self.records}

    def node_relevance(self, record: dict):
        return load_node_relevance(self.path.parent, record)


@dataclass
class Run:
    """A run read back: lm-eval's results JSON (with the ``lrp`` summary) and the attribution records per task."""

    path: Path
    results: dict | None
    tasks: dict[str, TaskAttributions]

    def __getitem__(self, task: str) -> TaskAttributions:
        return self.tasks[task]

    def records(self) -> Iterator[dict]:
        for t in self.tasks.values():
            yield from t.records


def _latest(files: list[Path]) -> list[Path]:
    """Per task, the newest attribution file (a re-run into the same folder adds a new timestamp)."""
    newest: dict[str, tuple[str, Path]] = {}
    for f in files:
        m = RECORD_NAME.match(f.name)
        if not m or m.group("rank") is not None:
            continue
        task, stamp = m.group("task"), m.group("stamp")
        if task not in newest or stamp > newest[task][0]:
            newest[task] = (stamp, f)
    return [p for _, p in newest.values()]


def load_run(path: str | Path) -> Run:
    """Read a run back: ``<output_path>``, ``<output_path>/<model_name_sanitized>`` or the ``x.json`` given as
    ``--output_path``. Every lm-eval results file of the folder is read and merged (tasks evaluated in separate
    invocations); a run without ``--lrp`` has no tasks here but its results."""
    run_dir = locate(path)
    results = read_results(run_dir)
    tasks = {}
    for f in _latest(sorted(run_dir.glob(RECORD_GLOB))):
        task = RECORD_NAME.match(f.name).group("task")
        tasks[task] = TaskAttributions(task, f, read_records(f))
    return Run(run_dir, results, tasks)
