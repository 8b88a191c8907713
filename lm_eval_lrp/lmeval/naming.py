"""Where lm-eval writes a run's output: ``<output_path>/<model_name_sanitized>`` (or the folder of ``*.json``)."""

from __future__ import annotations

from pathlib import Path


def run_dir(output_path: str | None, name_args: dict) -> Path | None:
    if not output_path:
        return None
    from lm_eval.loggers.evaluation_tracker import GeneralConfigTracker
    from lm_eval.utils import sanitize_model_name

    path = Path(output_path)
    if path.suffix == ".json":
        return path.parent
    name = GeneralConfigTracker._get_model_name(name_args) or "model"
    return path / sanitize_model_name(name)
