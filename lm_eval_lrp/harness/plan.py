"""Phases 1 and 2 of the loop (rank 0): judge the logged samples, then plan the work — which failures, which files,
what an earlier run of the same command already attributed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rich.markup import escape

from ..failures import Failure
from ..lmeval.samples import find_failures, judged_by
from .resume import fingerprint, resume_state, writable


@dataclass
class TaskPlan:
    name: str
    metric: str | None  # the metric that decides "wrong"
    filter: str | None  # the filter whose answers are judged
    n_failures: int  # every failure lm-eval's metric found (before --lrp_max_failures)
    failures: list[Failure] = field(default_factory=list)  # the ones to attribute
    file: Path | None = None  # attributions_<task>_<time>.jsonl
    kept: list = field(default_factory=list)  # records kept from an interrupted run
    done_ids: set = field(default_factory=set)

    @property
    def todo(self) -> list[Failure]:
        return [f for f in self.failures if f.doc_id not in self.done_ids]


@dataclass
class Plan:
    tasks: dict[str, TaskPlan] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fingerprint: str = ""
    error: str | None = None
    unwritten: str | None = None  # why no record can be written (the output folder is not writable)
    write_seconds: dict = field(default_factory=dict)
    stopped: dict = field(default_factory=dict)  # task -> why its attribution stopped (a systematic bug)
    fallbacks: dict = field(default_factory=dict)  # task -> {cause: count} of paths taken instead of the usual one


def find_task_failures(views: dict, samples: dict, cfg) -> tuple[dict[str, TaskPlan], list[str]]:
    """Phase 1: the failures of every task by its own metrics (lm-eval's verdicts in the logged samples)."""
    plans, notes = {}, []
    for name, task_samples in samples.items():
        view = views.get(name)
        if view is None:
            continue
        failures, task_notes = find_failures(name, view.output_type, task_samples, view.higher_is_better,
                                             cfg.metric, cfg.filter)
        chosen, metric = judged_by(task_samples, cfg.metric, cfg.filter)
        failures = sorted(failures, key=lambda f: f.doc_id)
        selected = failures if cfg.max_failures is None else failures[: int(cfg.max_failures)]
        plans[name] = TaskPlan(name, metric, chosen, len(failures), selected)
        notes += task_notes
    return plans, list(dict.fromkeys(notes))


def plan(subject, views: dict, samples: dict, out_dir: Path | None, say, notes: list[str] | None = None) -> Plan:
    """Phases 1–2 on rank 0: judge, then name the files and keep what an interrupted run already wrote."""
    if subject.unsupported:
        return Plan(error=subject.unsupported)
    tasks, found = find_task_failures(views, samples, subject.config)
    result = Plan(tasks=tasks, notes=list(dict.fromkeys((notes or []) + found)),
                  fingerprint=fingerprint(subject.config, subject.source))
    for note in result.notes:
        say(f"[yellow]lm-eval-lrp:[/] {escape(note)}")
    out, why = writable(out_dir, say)
    if any(tp.failures for tp in tasks.values()):
        result.unwritten = why
    stamp = datetime.now().isoformat().replace(":", "-")
    for name, tp in tasks.items():
        if not tp.failures:
            continue
        path, kept = resume_state(out, name, tp.failures, result.fingerprint, warn=lambda m: say(f"[yellow]lm-eval-lrp:[/] {escape(m)}"))
        tp.file = path or (out / f"attributions_{name}_{stamp}.jsonl" if out is not None else None)
        tp.kept, tp.done_ids = kept, {r["doc_id"] for r in kept}
        if kept:
            say(f"[yellow]lm-eval-lrp:[/] {escape(name)}: resuming {escape(path.name)}, {len(kept)} records kept")
    return result
