"""The harness loop: after lm-eval judged the documents, explain each wrong one on the same model object.

:func:`attribute_run` is called by the seam (:mod:`lm_eval_lrp.lmeval.route`) with plain values — the model as a
:class:`~.subject.Subject`, task views, lm-eval's logged samples and results — and runs in numbered phases:

1. judge — the failures of each task by its own metrics (:mod:`.plan`);
2. plan / resume — files, and the records an interrupted run of the same command already wrote (:mod:`.resume`);
3. attribute — this rank's share of the failures, each record written as soon as it exists (:mod:`.attribute`);
4. graphs — attribution graphs of the strongest attributed failures, when asked for;
5. gather / merge — under data parallelism, records to rank 0 and the ranks' shards into one file (:mod:`.shards`);
6. summary — the ``lrp`` block of the results JSON and the terminal table (:mod:`lm_eval_lrp.harness.results_block`).
"""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape

from ..artifacts import AttributionWriter
from .attribute import SystematicBug, TaskAttribution
from .plan import Plan, plan
from .shards import gather_records, merge_shards, shard_path
from .subject import Subject

__all__ = ["Subject", "attribute_run"]


def _progress(console, total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]LRP[/] {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console, disable=total == 0)


def stop_task(bug: SystematicBug, folder: Path | None, say) -> str:
    """One message for a task stopped by a systematic bug; its traceback saved in the run folder (else printed)."""
    where = None
    if folder is not None:
        where = folder / f"lrp_traceback_{bug.task}.txt"
        where.write_text(bug.traceback, encoding="utf-8")
    else:
        say(escape(bug.traceback))
    why = (f"{bug} — traceback in {where if where is not None else 'the output above'}; the records written so far "
           "are kept, and rerunning the same command resumes after the fix")
    say(f"[red]lm-eval-lrp: {escape(bug.task)}:[/] {escape(why)}")
    return why


def attribute_share(subject: Subject, views: dict, work: Plan, console) -> dict[str, list]:
    """Phases 3–4: explain this rank's share of the failures not yet attributed; write them (a shard when world > 1)."""
    from task_hooks import HookRegistry, load_hooks_from

    cfg, rank, world = subject.config, subject.rank, subject.world
    hooks = HookRegistry(load_hooks_from(cfg.hooks_path) if cfg.hooks_path else None)
    mine = {n: [f for i, f in enumerate(tp.todo) if i % world == rank] for n, tp in work.tasks.items()}
    records: dict[str, list] = {}
    with _progress(console, sum(len(v) for v in mine.values())) as progress:
        bar = progress.add_task("attributing failures", total=sum(len(v) for v in mine.values()))
        for name, failures in mine.items():
            tp, view = work.tasks[name], views[name]
            writer = None
            if tp.file is not None and failures:
                writer = AttributionWriter(shard_path(tp.file, rank, world), sidecar=tp.file.with_suffix(".nodes"))
            job = TaskAttribution(subject, view, hooks.for_task(name, view.output_type), writer, work.fingerprint)
            try:  # phase 3
                progress.update(bar, description=f"{name}: {len(failures)} failures")
                job.explain_all(failures, done=lambda: progress.advance(bar))
            except SystematicBug as bug:
                folder = tp.file.parent if tp.file is not None else None
                work.stopped[name] = stop_task(bug, folder, lambda m: console.print(m, soft_wrap=True))
            finally:
                if writer is not None:
                    writer.close()
                job.flush_warnings()
            chosen = job.graph_candidates() if cfg.graph is not None and name not in work.stopped else []
            if chosen:  # phase 4
                graphs = progress.add_task(f"{name}: attribution graphs", total=len(chosen))
                for record in chosen:
                    job.build_graph(record, tp.file.parent if tp.file is not None else None)
                    progress.advance(graphs)
            records[name] = (tp.kept if rank == 0 else []) + job.records
            work.write_seconds[name] = job.write_seconds
            if job.fallbacks:
                work.fallbacks[name] = dict(job.fallbacks)
    return records


def attribute_run(subject: Subject, views: dict, samples: dict, results: dict | None, out_dir: Path | None,
                  notes: list[str] | None = None) -> dict:
    """The whole attribution step of one evaluation (every rank calls it; rank 0 returns the summary)."""
    from rich.console import Console

    from ..console import print_summary
    from .results_block import results_block

    console = Console(stderr=True)

    def say(message: str) -> None:
        console.print(message, soft_wrap=True)

    work = plan(subject, views, samples, out_dir, say, notes) if subject.rank == 0 else None  # phases 1–2
    if subject.world > 1:
        work = subject.broadcast(work)
    if work.error:
        return {"error": work.error, "self_check": subject.self_check, "tasks": {}}
    try:
        records = attribute_share(subject, views, work, console)  # phases 3–4
    except KeyboardInterrupt:
        kept = [str(tp.file) for tp in work.tasks.values() if tp.file is not None and tp.file.exists()]
        say(f"[red]lm-eval-lrp: interrupted.[/] Every record finished so far is kept ({escape(', '.join(kept)) or 'nothing written'}); "
            "rerun the same command with the same --output_path to attribute the rest.")
        raise SystemExit(130) from None
    if subject.world > 1:  # phase 5
        records = gather_records(subject, records)
        if subject.rank != 0:
            return {}
        merge_shards({n: tp.file for n, tp in work.tasks.items() if tp.file is not None}, subject.world)
    summary = results_block(records, work, results, subject.config)  # phase 6
    summary["self_check"] = subject.self_check
    print_summary(summary, console)
    return summary
