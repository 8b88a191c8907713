"""Picking up an interrupted run: what a record depends on (its fingerprint) and which records can be kept."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from ..artifacts import read_records, rewrite_records, task_of
from ..locate.chain import DEFAULT_CHAINS, WITH_REFERENCE
from ..record import FORMAT_VERSION, RECORD_GLOB

#: settings that do not change a record's content
_NOT_CONTENT = ("output_path", "max_failures", "hooks_path", "graph", "graph_prune", "batch_size", "allow_errors")


def fingerprint(config, source: dict) -> str:
    """What a record's content depends on besides the document: the model, the attribution settings, the record
    format and the default locator chains (records of an older lm-eval-lrp are redone, not reused)."""
    settings = {k: v for k, v in asdict(config).items() if k not in _NOT_CONTENT}
    chains = WITH_REFERENCE if config.reference_model else DEFAULT_CHAINS
    engine = {"format": FORMAT_VERSION, "chains": {str(k): list(v) for k, v in chains.items()}}
    blob = json.dumps({"settings": settings, "source": source, "engine": engine}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def resume_state(out_dir: Path | None, task: str, failures: list, fp: str, warn=None) -> tuple[Path | None, list]:
    """Records of an earlier (possibly killed) run of the same command that can be kept, and their file.

    The newest ``attributions_<task>_*.jsonl`` whose records all carry this run's fingerprint is reused: records of
    documents that are still failures (same doc_hash) are kept, error records are dropped (redone), and lines that
    are not records (a torn last line) are cut away — each said through ``warn``.
    """
    if out_dir is None or not out_dir.is_dir():
        return None, []
    wanted = {f.doc_id: f.doc_hash for f in failures}
    for path in sorted(out_dir.glob(RECORD_GLOB), reverse=True):
        if task_of(path) != task:
            continue
        records = read_records(path, warn=warn)
        if not records or any(r.get("fingerprint") != fp for r in records):
            continue
        keep = [r for r in records if r.get("status") != "error" and wanted.get(r["doc_id"], object()) == r.get("doc_hash")]
        rewrite_records(path, keep)
        return path, keep
    return None, []


def writable(path: Path | None, say) -> tuple[Path | None, str | None]:
    """(``path``, None) if attribution files can be written there; otherwise (None, why) — said through ``say``:
    failures are still attributed and summarised, and the run's exit status tells that nothing was written."""
    if path is None:
        return None, None
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".lm_eval_lrp_write_test"
        probe.write_text("")
        probe.unlink()
        return path, None
    except OSError as err:
        why = f"cannot write attributions to {path} ({err.strerror or err}); choose a writable --output_path"
        say(f"[red]lm-eval-lrp:[/] {why}. Failures are still attributed and summarised here.")
        return None, why
