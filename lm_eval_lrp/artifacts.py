"""Attribution artifacts beside lm-eval's output, and the loader that reads a run back.

Per task: ``attributions_<task>_<timestamp>.jsonl`` (one JSON record per failure, flushed one by one or a batch at
a time) and, for per-layer node relevance, a sidecar folder ``attributions_<task>_<timestamp>.nodes/``: one file
per batch of records, or per record written alone and in runs before batches (:mod:`.sidecars`). Nothing here
unpickles: JSON and safetensors only.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from .lmeval.results import locate, read_results
from .record import RECORD_GLOB, Record, RecordFormatError
from .sidecars import read_sidecar, write_sidecar

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
    """Appends records to one task's JSONL file; node relevance goes to the sidecar folder (:mod:`.sidecars`).

    Records are held until :meth:`commit` — at once when ``hold`` is 1 (the default: each record flushed as it is
    written), or every ``hold`` records (a batch: one sidecar file and one flush for all of them). The sidecar is
    written before the records that name it; :meth:`close` commits what is held, so a run stopped by Ctrl-C (the
    harness closes its writer in a ``finally``) loses no finished record. The file is opened at the first record: a
    run interrupted before any leaves no empty file behind."""

    def __init__(self, path: Path, sidecar: Path | None = None, hold: int = 1):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sidecar = Path(sidecar) if sidecar is not None else self.path.with_suffix(".nodes")
        self.hold = hold
        self._fh = None  # opened at the first record: an interrupted run that wrote none leaves no empty file
        # the writer's own encoding, refusing NaN/inf: a finite record (nearly all) is written without a cleaning pass
        self._strict = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
        self._pending: list[tuple[dict, torch.Tensor | None, list[str] | None]] = []
        self.count = 0
        self.seconds = 0.0  # time spent writing (sidecars and lines)

    def write(self, record: dict, node_relevance: torch.Tensor | None = None, node_names: list[str] | None = None):
        """Hold ``record`` (and its node relevance); written at the next :meth:`commit` (at once when ``hold`` is 1)."""
        if node_relevance is not None and not node_relevance.numel():
            node_relevance = None
        self._pending.append((record, node_relevance, node_names))
        if len(self._pending) >= self.hold:
            self.commit()

    def commit(self) -> None:
        """Write the held records: their sidecar file first, then their lines, flushed once."""
        if not self._pending:
            return
        t = time.perf_counter()
        pending = self._pending
        with_nodes = [i for i, (_, nodes, _) in enumerate(pending) if nodes is not None]
        records = [record for record, _, _ in pending]
        if with_nodes:
            self.sidecar.mkdir(exist_ok=True)
            fields = write_sidecar(self.sidecar, [pending[i] for i in with_nodes])
            for j, i in enumerate(with_nodes):
                records[i] = {**records[i], **fields[j]}
        lines = []
        for record in records:
            try:
                lines.append(self._strict(record))
            except ValueError:  # NaN/inf somewhere: written as null (records with them are flagged as errors)
                lines.append(json.dumps(_clean(record), ensure_ascii=False, separators=(",", ":")))
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write("".join(line + "\n" for line in lines))
        self._fh.flush()
        self._pending = []  # only once written: a commit stopped half-way is done again by close()
        self.count += len(lines)
        self.seconds += time.perf_counter() - t

    def close(self):
        try:
            self.commit()
        finally:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

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
    """(node names, relevance) of a record, from its sidecar (one file per record, or one per batch)."""
    return read_sidecar(run_dir, record)


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
