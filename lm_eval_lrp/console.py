"""The rich table printed at the end of an attributed run."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _fmt(x, spec=".3f"):
    return "–" if x is None else format(x, spec)


def print_summary(summary: dict, console: Console | None = None) -> None:
    console = console or Console(stderr=True)
    table = Table(title=f"lm-eval-lrp: failures explained ({summary.get('rule')}; clean cases: Δℓ > {summary.get('min_delta')})")
    for col in ("task", "metric", "value", "failures", "attributed", "clean rate", "median Δℓ", "ΣR/Δℓ"):
        table.add_column(col, no_wrap=True)
    details = []
    for name, t in summary.get("tasks", {}).items():
        table.add_row(
            name,
            t["metric"] or "–",
            _fmt(t["accuracy"], ".4f"),
            str(t["failures"]),
            str(t["attributed"]),
            _fmt(t["clean_case_rate"], ".2f"),
            _fmt(t["median_delta"], ".2f"),
            _fmt(t["median_conservation_ratio"], ".2f"),
        )
        reasons = {**t["skipped"], **{f"error: {k}": v for k, v in t["errors"].items()}}
        if reasons:
            details.append(f"[bold]{name}[/] skipped: " + "; ".join(escape(f"{v}× {k}") for k, v in reasons.items()))
        if t["top_wrong_tokens"]:
            details.append(f"[bold]{name}[/] tokens pushing towards the wrong answer: "
                           + ", ".join(escape(f"{tok!r}×{n}") for tok, n in t["top_wrong_tokens"][:8]))
    console.print(table)
    for line in details:
        console.print(line, highlight=False, markup=True, soft_wrap=True)
    for path in summary.get("files") or []:
        console.print(f"[bold]attributions:[/] {escape(path)}", soft_wrap=True)
