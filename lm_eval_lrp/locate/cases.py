"""``cases``: hand annotations from a JSONL file, one failure per line::

    {"task": "gsm8k", "doc_id": 3, "offset": 112, "target": "180", "contrast": "540"}

``offset`` is a char offset into the model's output (or ``index``, a token index into it); ``target`` and
``contrast`` are optional texts: the target is checked against the output token there, the contrast's first
token is the contrast. A malformed line is refused when the file is read, naming the file and the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..jsonl import numbered_objects
from .context import Context
from .types import Generation, Location, NotFound


@dataclass(frozen=True)
class HandCase:
    task: str
    doc_id: int
    offset: int | None
    index: int | None
    target: str | None
    contrast: str | None
    where: str  # "file:line"
    note: str = ""


def _int(value, name: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: {name} must be a non-negative integer, got {value!r}")
    return value


def load_cases(path: str | Path) -> dict[tuple[str, int], HandCase]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cases file {path} not found (a JSONL of hand annotations)")
    cases: dict[tuple[str, int], HandCase] = {}
    for where, row in numbered_objects(path):
        if not isinstance(row.get("task"), str) or not row["task"]:
            raise ValueError(f"{where}: 'task' (the lm-eval task name) is missing")
        doc_id = _int(row.get("doc_id"), "doc_id", where)
        if doc_id is None:
            raise ValueError(f"{where}: 'doc_id' is missing")
        offset, index = _int(row.get("offset"), "offset", where), _int(row.get("index"), "index", where)
        if (offset is None) == (index is None):
            raise ValueError(f"{where}: give exactly one of 'offset' (char offset into the output) or 'index' (token index)")
        for key in ("target", "contrast"):
            if row.get(key) is not None and not isinstance(row[key], str):
                raise ValueError(f"{where}: {key!r} must be a string")
        if (row["task"], doc_id) in cases:
            raise ValueError(f"{where}: a second annotation for {row['task']} doc {doc_id}")
        cases[(row["task"], doc_id)] = HandCase(row["task"], doc_id, offset, index, row.get("target"),
                                                row.get("contrast"), where, str(row.get("note", "")))
    return cases


class CasesLocator:
    name = "cases"
    needs = ("cases",)
    evidence = ("person",)

    def __init__(self, path: str | Path | None = None):
        if path is None:
            raise ValueError("the cases locator needs a JSONL file of hand annotations: path=...")
        self.path = Path(path)
        self.cases = load_cases(self.path)

    def locate(self, gen: Generation, ctx: Context) -> Location:
        case = self.cases.get((gen.task, gen.doc_id))
        if case is None:
            raise NotFound(f"no hand annotation for {gen.task} doc {gen.doc_id} in {self.path}")
        index = case.index if case.index is not None else ctx.index_at(gen, case.offset)
        if index > len(gen.output_ids) or (index == len(gen.output_ids) and ctx.model is None):
            raise NotFound(f"{case.where}: position past the end of the output ({len(gen.output_ids)} tokens)")
        target = ctx.target_at(gen, index)
        piece = ctx.decode([target]).strip()
        if case.target is not None and not (piece.startswith(case.target.strip()) or case.target.strip().startswith(piece)):
            raise NotFound(f"{case.where}: annotated target {case.target!r} is not the output token there ({piece!r})")
        contrast = None
        if case.contrast is not None:
            if ctx.encode is None:
                raise NotFound("needs the tokenizer to encode the annotated contrast")
            ids = ctx.encode(case.contrast)
            if not ids or ids[0] == target:
                raise NotFound(f"{case.where}: the contrast {case.contrast!r} gives no token other than the target")
            contrast = int(ids[0])
        offset = ctx.offsets(gen.output_ids)[index] if case.offset is None else case.offset
        reason = f"hand annotation {case.where}" + (f": {case.note}" if case.note else "")
        return Location(index, target, contrast, self.name, reason, output_offset=offset,
                        candidates=[ctx.candidate(gen, index, "hand annotation")])
