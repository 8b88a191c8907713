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
    p.add_argument("run_dir", help="the run's --output_path (a folder, or the .json name given to lm-eval), or its model sub-folder")
    p.add_argument("--output", "-o", help="index HTML file to write (default: RUN_DIR/<model>/report.html; record views go "
                   "to <name>_records/ beside it)")
    p.add_argument("--top", type=int, default=None,
                   help="render at most N attributed records per task in detail (strongest Δℓ first; default: all)")
    p.add_argument("--urt_max_support", type=float, default=None, help="URT threshold (default 0.5, see lm_eval_lrp.patterns)")
    p.add_argument("--oit_min_share", type=float, default=None, help="OIT threshold (default 0.5, see lm_eval_lrp.patterns)")
    return p


REPORT_COLUMNS = [("task", "task"), ("metric", "metric"), ("value", "value"), ("failures", "fail"),
                  ("attributed", "attr"), ("skipped", "skip"), ("errors", "err"), ("clean rate", "clean"),
                  ("median Δℓ", "Δℓ"), ("ΣR/Δℓ", "ΣR/Δℓ")]


def print_summary(summaries, out_path, builder, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape

    from ..console import print_table
    from ..report.svg import fmt

    console = console or Console()
    def count(s, n):
        return "–" if s.failures is None else str(n)

    rows = [[s.name, s.metric or "–", fmt(s.accuracy, ".4f"), count(s, s.failures), count(s, s.attributed),
             count(s, sum(s.skipped.values())), count(s, s.error_count), fmt(s.clean_case_rate, ".2f"),
             fmt(s.median_delta, ".3f"), fmt(s.median_ratio, ".2f")] for s in summaries]
    legend = print_table(console, "lm-eval-lrp report", REPORT_COLUMNS, rows)
    if legend:
        console.print(escape(legend), highlight=False, soft_wrap=True)
    for note in builder.warnings():
        console.print(f"[yellow]{escape(note)}[/]", highlight=False, soft_wrap=True)
    for s in summaries:
        pats = " · ".join(f"{k} {n}" for k, n in s.patterns.items() if n)
        if pats:
            console.print(f"  [bold]{escape(s.name)}[/] patterns: {escape(pats)}", highlight=False, soft_wrap=True)
        if s.top_tokens:
            console.print(f"  [bold]{escape(s.name)}[/] tokens pushing towards the wrong answer (in top 3 / records "
                          "containing them): " + escape(", ".join(f"{t!r} {c}/{n}" for t, c, n in s.top_tokens[:6])),
                          highlight=False, soft_wrap=True)
        if s.confidence:
            n = sum(s.confidence.values())
            console.print(f"  [bold]{escape(s.name)}[/] locations: " + ", ".join(
                f"{k} {c} ({c / n:.0%})" for k, c in s.confidence.items() if c)
                + ("" if s.confidence.get("confirmed") else " — none confirmed: the explained tokens are candidates"),
                highlight=False, soft_wrap=True)
        for reason, n in {**s.skipped, **{f"error: {k}": v for k, v in s.errors.items()}}.items():
            console.print(f"  [bold]{escape(s.name)}[/] {n}× {escape(str(reason))}", highlight=False, soft_wrap=True)
    if builder.cases_written:
        console.print(f"[bold]cases file:[/] {escape(str(builder.cases_path))} ({builder.cases_written} generate_until "
                      "failures: current location and candidates; edit, then lm-eval-lrp explain RUN_DIR --cases FILE)",
                      highlight=False, soft_wrap=True)
    size = out_path.stat().st_size
    console.print(f"[bold]report:[/] {escape(str(out_path))} ({size / 1024:.0f} KiB index; {builder.rendered} record views "
                  f"in {len(builder.parts)} pages, {builder.graphs_found} attribution graphs)", highlight=False, soft_wrap=True)


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
