"""lm-eval's results files, found and read the way lm-eval 0.4 names them (plain JSON; no lm-eval import).

lm-eval writes one aggregated results file per invocation:

* ``--output_path DIR``       → ``DIR/<model_name_sanitized>/results_<date_id>.json``
* ``--output_path DIR/x.json`` → ``DIR/x_<date_id>.json`` (and the samples beside it, in ``DIR``)

where ``<date_id>`` is ``datetime.now().isoformat()`` with ``:`` replaced by ``-``. Tasks evaluated in separate
invocations into the same folder leave one results file each. :func:`read_results` merges all of a folder's files
into one results dict: per task, the newest file that holds the task wins (``results``, ``configs``, ``n-shot``,
``versions``, ``n-samples``, ``higher_is_better`` and the ``lrp`` summary's ``tasks``); the top-level fields
(``config``, versions, dates) come from the newest file. ``merged_from`` lists the files read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..record import RECORD_GLOB

DATE_ID = r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?"
RESULTS_NAME = re.compile(rf"^(?P<stem>.+)_(?P<date>{DATE_ID})\.json$")
PER_TASK_KEYS = ("results", "configs", "n-shot", "versions", "n-samples", "higher_is_better", "task_hashes")


def date_of(path: Path) -> str | None:
    m = RESULTS_NAME.match(Path(path).name)
    return m.group("date") if m else None


def _looks_like_results(path: Path) -> bool:
    """A JSON file named ``<stem>_<date_id>.json`` whose top level has ``results`` (lm-eval's aggregated file)."""
    if not RESULTS_NAME.match(path.name) or path.name.startswith(("samples_", "graph_")):
        return False
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return '"results"' in head or path.name.startswith("results_")


def results_files(folder: str | Path) -> list[Path]:
    """lm-eval results files in ``folder``, oldest first (by the date in their names)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob("*.json") if _looks_like_results(p)]
    return sorted(files, key=lambda p: (date_of(p) or "", p.name))


def has_run(folder: Path) -> bool:
    return folder.is_dir() and (bool(results_files(folder)) or any(folder.glob(RECORD_GLOB)))


def locate(path: str | Path) -> Path:
    """The folder holding a run: ``path`` itself, the folder of a results file, or the single model sub-folder.

    Accepts what was passed to ``--output_path``: a folder (lm-eval adds ``<model_name_sanitized>``) or a
    ``.json`` name (lm-eval writes ``<stem>_<date>.json`` beside it).
    """
    path = Path(path)
    if path.suffix == ".json" and not path.is_dir():
        if path.is_file():
            return path.parent
        stem = path.stem
        if path.parent.is_dir() and any(p.name.startswith(stem + "_") for p in results_files(path.parent)):
            return path.parent
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: pass the run's --output_path")
    if path.is_file():
        return path.parent
    if has_run(path):
        return path
    subs = sorted(d for d in path.iterdir() if d.is_dir() and has_run(d))
    if len(subs) == 1:
        return subs[0]
    if not subs:
        raise FileNotFoundError(f"no lm-eval results or attribution files under {path}")
    raise ValueError(f"{path} holds several model folders; pass one of: {', '.join(str(s) for s in subs)}")


def read_file(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def merge(documents: list[tuple[str, dict]]) -> dict | None:
    """Merge results dicts given oldest first as (name, dict): per task the newest wins; see the module docstring."""
    if not documents:
        return None
    merged: dict = {}
    lrp_tasks: dict = {}
    lrp_top: dict = {}
    for name, doc in documents:
        for key, value in doc.items():
            if key in PER_TASK_KEYS and isinstance(value, dict):
                merged.setdefault(key, {}).update(value)
            elif key == "lrp" and isinstance(value, dict):
                lrp_top.update({k: v for k, v in value.items() if k != "tasks"})
                lrp_tasks.update(value.get("tasks") or {})
            elif key == "groups" and isinstance(value, dict):
                merged.setdefault("groups", {}).update(value)
            else:
                merged[key] = value
    if lrp_top or lrp_tasks:
        merged["lrp"] = {**lrp_top, "tasks": lrp_tasks}
    merged["merged_from"] = [name for name, _ in documents]
    return merged


def read_results(folder: str | Path) -> dict | None:
    """All results files of a run folder merged into one dict (None when there are none)."""
    docs = []
    for p in results_files(Path(folder)):
        data = read_file(p)
        if data is not None:
            docs.append((p.name, data))
    return merge(docs)
