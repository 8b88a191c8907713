"""``lm-eval-lrp compare RUN_1 RUN_2 [... RUN_N]``: run 1's failures re-explained on every other run's model."""

from __future__ import annotations

import argparse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-eval-lrp compare",
        description="For every attributed failure of RUN_1, explain the same (token ids, position, target, contrast) "
        "on the model of each further run (sizes, training checkpoints): accuracy across the runs, Δℓ of RUN_1's "
        "failures on every run, corrected/uncorrected counts, total and per-segment relevance as trend lines, "
        "failure patterns, top-token changes and a per-case drill-down. Writes compare.html and compare.json. "
        "The models must share RUN_1's tokenizer.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="two or more runs; the first one's failures are compared")
    p.add_argument("--model_args_b", "--model_args", dest="model_args", action="append", default=None,
                   help="a run's model (pretrained=...,gguf_file=...,revision=...) instead of its recorded model_args; "
                   "give it once per run after the first, in order")
    p.add_argument("--output", "-o", default=None,
                   help="output folder (default: RUN_1's folder/compare, i.e. beside the first run's results)")
    p.add_argument("--device", default=None, help="device for the models (default: cuda if available, else cpu)")
    p.add_argument("--dtype", default=None,
                   help="dtype for every run's model (default: the dtype each run was evaluated in, from its "
                   "model_args' dtype=; float32 when none was given)")
    p.add_argument("--rule", choices=("attnlrp", "cp"), default=None,
                   help="LRP rule for every run (default: the rule each run used, from its results JSON; RUN_1's "
                   "records' rule when a run has none)")
    p.add_argument("--tasks", default=None, help="comma-separated tasks to compare (default: all of RUN_1's)")
    p.add_argument("--limit", type=int, default=None, help="at most this many of RUN_1's failures per task")
    return p


def _print(console, summaries, trend) -> None:
    from rich.markup import escape

    from ..console import fitting_table
    from ..report.svg import fmt

    runs = trend["runs"]
    cols = [("task", "task"), ("metric", "metric")] + [(f"run {i + 1}", str(i + 1)) for i in range(len(runs))]
    rows = [[a["task"], str(a["metric"])] + [fmt(v, ".4f") for v in a["by_run"]] for a in trend["accuracy"]]
    per = trend["per_run"]
    if trend["cases"]:
        rows.append(["run 1's failures", "median Δℓ"] + [fmt(p["median_delta"], "+.2f") for p in per])
        rows.append(["run 1's failures", "corrected"] + ["–"] + [f"{p['corrected']}/{p['cases']}" for p in per[1:]])
    table, legend = fitting_table("lm-eval-lrp compare", cols, rows, console.width)
    console.print(table)
    for i, r in enumerate(runs):
        console.print(f"  run {i + 1} ({escape(r['label'])}): {escape(r['name'])}", highlight=False, soft_wrap=True)
    for s in summaries:
        for note in s["notes"]:
            console.print(f"  {escape(note)}", highlight=False, soft_wrap=True)
        if s["errors"]:
            console.print(f"  [red]{len(s['errors'])} cases failed on {escape(s['b']['name'])}[/] (see compare.json)")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from pathlib import Path

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..reexplain import CompareError, TokenizerMismatch, compare
    from ..lmeval.results import locate
    from ..report.compare_page import write_outputs
    from ..report.trend import trend

    console = Console()
    if len(args.runs) < 2:
        console.print("lm-eval-lrp compare: give at least two runs (the first one's failures are compared)")
        return 2
    first, others = args.runs[0], args.runs[1:]
    model_args = args.model_args or []
    if model_args and len(model_args) != len(others):
        console.print(f"lm-eval-lrp compare: --model_args given {len(model_args)} times for {len(others)} runs after the first")
        return 2
    try:
        out_dir = Path(args.output) if args.output else locate(first) / "compare"
    except (FileNotFoundError, ValueError) as err:
        console.print(f"[bold red]lm-eval-lrp compare:[/] {escape(str(err))}", highlight=False)
        return 2
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    summaries = []
    for i, run_b in enumerate(others):
        with Progress(TextColumn("[bold]compare[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            state = {}

            def factory(total, progress=progress, state=state, run_b=run_b):
                state["bar"] = progress.add_task(f"run 1's failures on {run_b}", total=total)
                return lambda: progress.advance(state["bar"])

            try:
                summaries.append(compare(first, run_b, model_args[i] if model_args else None, device=device,
                                         dtype=args.dtype, rule=args.rule, tasks=tasks, limit=args.limit,
                                         progress_factory=factory))
            except TokenizerMismatch as err:
                console.print(f"[bold red]lm-eval-lrp compare: tokenizer mismatch[/] — {escape(str(err))}", highlight=False)
                return 3
            except (CompareError, FileNotFoundError, ValueError, OSError) as err:
                console.print(f"[bold red]lm-eval-lrp compare:[/] {escape(str(err))}", highlight=False)
                return 2
    html_path, json_path = write_outputs(summaries, out_dir)
    _print(console, summaries, trend(summaries))
    console.print(f"[bold]compare:[/] {escape(str(html_path))} and {escape(str(json_path))}", highlight=False, soft_wrap=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
