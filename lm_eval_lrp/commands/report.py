"""``lm-eval-lrp report RUN_DIR [--output report.html] [--top N]``: a static HTML report and a terminal summary."""

from __future__ import annotations

import argparse
import sys


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-eval-lrp report",
        description="Write a self-contained HTML report of an attributed run (heatmaps, segments, conservation, "
        "attribution graphs, failure patterns) and print a summary. No model is run.",
    )
    p.add_argument("run_dir", help="the run's --output_path, or its model sub-folder")
    p.add_argument("--output", "-o", help="HTML file to write (default: RUN_DIR/<model>/report.html)")
    p.add_argument("--top", type=int, default=None,
                   help="render at most N attributed records per task in detail (strongest Δℓ first; default: all)")
    p.add_argument("--urt_max_support", type=float, default=None, help="URT threshold (default 0.10, see lm_eval_lrp.patterns)")
    p.add_argument("--oit_min_share", type=float, default=None, help="OIT threshold (default 0.30, see lm_eval_lrp.patterns)")
    return p


def print_summary(summaries, out_path, builder, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..report.svg import fmt

    console = console or Console()
    table = Table(title="lm-eval-lrp report")
    table.add_column("task", overflow="fold", min_width=12)
    for col in ("metric", "value", "failures", "attributed", "clean rate", "median Δℓ"):
        table.add_column(col, no_wrap=True)
    for s in summaries:
        table.add_row(escape(s.name), escape(s.metric or "–"), fmt(s.accuracy, ".4f"), str(s.failures), str(s.attributed),
                      fmt(s.clean_case_rate, ".2f"), fmt(s.median_delta, ".3f"))
    console.print(table)
    for s in summaries:
        pats = " · ".join(f"{k} {n}" for k, n in s.patterns.items() if n) or "–"
        console.print(f"  [bold]{escape(s.name)}[/] patterns: {escape(pats)}", highlight=False)
        for reason, n in {**s.skipped, **{f"error: {k}": v for k, v in s.errors.items()}}.items():
            console.print(f"  [bold]{escape(s.name)}[/] {n}× {escape(str(reason))}", highlight=False)
    size = out_path.stat().st_size
    console.print(f"[bold]report:[/] {escape(str(out_path))} ({size / 1024:.0f} KiB; {builder.rendered} record views, "
                  f"{builder.graphs_found} attribution graphs)", highlight=False)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from ..patterns import Thresholds
    from ..report import build_report

    th = {}
    if args.urt_max_support is not None:
        th["urt_max_support"] = args.urt_max_support
    if args.oit_min_share is not None:
        th["oit_min_share"] = args.oit_min_share
    try:
        out, builder, summaries = build_report(args.run_dir, args.output, args.top, Thresholds(**th))
    except (FileNotFoundError, ValueError) as err:
        print(f"lm-eval-lrp report: {err}", file=sys.stderr)
        return 2
    print_summary(summaries, out, builder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
