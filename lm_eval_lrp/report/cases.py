"""The cases file a report exports (``report_cases.jsonl``): per generate_until failure its current location, target,
contrast and the candidates the locators considered, for a person to edit and give to ``lm-eval-lrp explain --cases``."""

from __future__ import annotations

import json
from pathlib import Path

from .summary import confidence_of, locator_of


def candidates_of(record: dict) -> list[dict]:
    """The positions the locators considered (token index, character offset, text, why), the explained one first."""
    block = record.get("locate") if isinstance(record.get("locate"), dict) else {}
    out, seen = [], set()
    for c in block.get("candidates") or []:
        key = (c.get("index"), c.get("offset"))
        if key not in seen:
            seen.add(key)
            out.append({k: c.get(k) for k in ("index", "offset", "token", "why")})
    return out


def case_line(record: dict, max_candidates: int | None = None) -> dict | None:
    """A line of a cases file (``lm-eval-lrp explain --cases``) for a generate_until record, for a person to edit:
    the current location (``offset`` null where none is known) with its target and contrast, and the candidates
    the locators considered. None for records without a locator (multiple choice)."""
    block = record.get("locate")
    if not isinstance(block, dict):
        return None
    offset = record.get("output_offset")
    line = {"task": record.get("task"), "doc_id": record.get("doc_id"), "offset": offset}
    if offset is not None:
        for key in ("target", "contrast"):
            token = (record.get(key) or {}).get("token")
            if token is not None:
                line[key] = token
    line.update(locator=locator_of(record) or None, confidence=confidence_of(record) or None,
                candidates=[{k: c[k] for k in ("offset", "token", "why")} for c in candidates_of(record)
                            if c.get("offset") is not None][:max_candidates], note="")
    return line


def write_cases(path: Path, records: list[dict]) -> int:
    """The cases file of ``records`` (generate_until ones); returns how many lines were written."""
    lines = [line for line in map(case_line, records) if line is not None]
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return len(lines)
