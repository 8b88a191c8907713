"""``lm-eval-lrp compare RUN_A RUN_B [RUN_C ...]``: A's failures re-explained on each other run's model."""

from __future__ import annotations

import argparse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-eval-lrp compare",
        description="For every attributed failure of RUN_A, explain the same (token ids, position, target, contrast) "
        "on the model of RUN_B (and of each further run): accuracy side by side, Δℓ of A vs B, relevance by "
        "segment for corrected and uncorrected cases, failure patterns, top-token changes. Writes compare.html "
        "and compare.json. The models must share A's tokenizer.",
    )
    p.add_argument("run_a", help="the run whose failures are compared (e.g. the small model)")
    p.add_argument("runs_b", nargs="+", help="one or more runs of other models or checkpoints")
    p.add_argument("--model_args_b", action="append", default=None,
                   help="B's model (pretrained=...,gguf_file=...,revision=...) instead of RUN_B's recorded model_args; "
                   "give it once per B run, in order")
    p.add_argument("--output", "-o", default="lrp_compare", help="output folder (default: ./lrp_compare)")
    p.add_argument("--device", default=None, help="device for B's model (default: cuda if available, else cpu)")
    p.add_argument("--dtype", default="float32", help="dtype for B's model (default float32)")
    p.add_argument("--rule", choices=("attnlrp", "cp"), default=None, help="LRP rule (default: the one A's records used)")
    p.add_argument("--tasks", default=None, help="comma-separated tasks to compare (default: all of A's)")
    p.add_argument("--limit", type=int, default=None, help="at most this many of A's failures per task")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from ..compare import CompareError, TokenizerMismatch, compare
    from ..report.compare_page import write_outputs
    from ..report.svg import fmt

    console = Console()
    model_args = args.model_args_b or []
    if model_args and len(model_args) != len(args.runs_b):
        console.print(f"lm-eval-lrp compare: --model_args_b given {len(model_args)} times for {len(args.runs_b)} B runs")
        return 2
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    summaries = []
    for i, run_b in enumerate(args.runs_b):
        with Progress(TextColumn("[bold]compare[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            state = {}

            def factory(total, progress=progress, state=state, run_b=run_b):
                state["bar"] = progress.add_task(f"A's failures on {run_b}", total=total)
                return lambda: progress.advance(state["bar"])

            try:
                summaries.append(compare(args.run_a, run_b, model_args[i] if model_args else None, device=device,
                                         dtype=args.dtype, rule=args.rule, tasks=tasks, limit=args.limit,
                                         progress_factory=factory))
            except TokenizerMismatch as err:
                console.print(f"[bold red]lm-eval-lrp compare: tokenizer mismatch[/] — {escape(str(err))}", highlight=False)
                return 3
            except (CompareError, FileNotFoundError, ValueError, OSError) as err:
                console.print(f"[bold red]lm-eval-lrp compare:[/] {escape(str(err))}", highlight=False)
                return 2
    html_path, json_path = write_outputs(summaries, args.output)
    for s in summaries:
        table = Table(title=f"A {s['a']['name']}  vs  B {s['b']['name']}")
        for col in ("task", "metric", "A", "B", "A's failures", "corrected on B", "median Δℓ A → B"):
            table.add_column(col)
        per_task = s["tasks"]
        for row in s["accuracy"]:
            t = per_task.get(row["task"], {})
            table.add_row(escape(row["task"]), escape(str(row["metric"])), fmt(row["a"], ".4f"), fmt(row["b"], ".4f"),
                          str(t.get("cases", 0)), f"{t.get('corrected', 0)} ({fmt(t.get('corrected_rate'), '.0%')})" if t else "–",
                          f"{fmt(t.get('median_delta_a'), '+.2f')} → {fmt(t.get('median_delta_b'), '+.2f')}" if t else "–")
        console.print(table)
        for note in s["notes"]:
            console.print(f"  {escape(note)}", highlight=False)
        if s["errors"]:
            console.print(f"  [red]{len(s['errors'])} cases failed[/] (see compare.json)")
    console.print(f"[bold]compare:[/] {escape(str(html_path))} and {escape(str(json_path))}", highlight=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
