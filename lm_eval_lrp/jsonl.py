"""JSON Lines written or checked by hand (hand annotations, dev sets): one JSON object a line, blank lines skipped,
a malformed line refused naming the file and the line (``file:line``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator


def numbered_objects(path: str | Path) -> Iterator[tuple[str, dict]]:
    """``(where, row)`` for each non-blank line of ``path``: ``where`` is ``"file:line"`` (for the caller's own
    checks to name), ``row`` the line's JSON object. ValueError names a line that is not JSON or not an object."""
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where}: each line must be a JSON object")
        yield where, row
