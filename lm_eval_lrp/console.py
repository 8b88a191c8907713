"""Rich tables that fit the terminal: headers are abbreviated (with a legend) rather than cut, numbers never cut;
and the table printed at the end of an attributed run."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _fmt(x, spec=".3f"):
    return "–" if x is None else format(x, spec)


def fitting_table(title: str, columns: list[tuple[str, str]], rows: list[list[str]], width: int,
                  text_columns: int = 2) -> tuple[Table, str]:
    """A table of ``rows`` (strings) under ``columns`` = [(full header, short header)].

    Full headers are used when the table fits ``width``; otherwise the short ones, and the legend returned
    ("short = full; ...") says what they mean. The first ``text_columns`` columns (task, metric) fold onto several
    lines when space is short; every other column is at least as wide as its widest cell: numbers are never cut.
    """
    n = len(columns)
    cells = [max([len(r[i]) for r in rows] + [1]) for i in range(n)]
    frame = 3 * n + 1  # padding of one space each side and the vertical rules

    def need(headers):
        return sum(max(c, len(h)) for c, h in zip(cells, headers)) + frame

    full = [f for f, _ in columns]
    use_short = need(full) > width
    headers = [s if use_short else f for f, s in columns]
    fixed = sum(max(cells[i], len(headers[i])) for i in range(text_columns, n)) + frame
    if fixed + 6 * text_columns > width:  # too narrow for one line per row: one block of "field value" per row
        table = Table(title=title, show_header=False)
        table.add_column(overflow="fold")
        table.add_column(overflow="fold", justify="right")
        for r in rows:
            table.add_row(f"[bold]{escape(r[0])}[/]", "", end_section=False)
            for (f, _), c in zip(columns[1:], r[1:]):
                table.add_row(escape(f), escape(c))
            table.add_section()
        return table, ""
    room = max(width - fixed, 6 * text_columns)
    table = Table(title=title)
    for i, h in enumerate(headers):
        if i < text_columns:
            want = max(cells[i], len(h))
            table.add_column(escape(h), overflow="fold", max_width=max(room // text_columns, len(h), 6) if need(headers) > width else None,
                             min_width=min(want, max(room // text_columns, 4)))
        else:
            table.add_column(escape(h), no_wrap=True, min_width=max(cells[i], len(h)), justify="right")
    for r in rows:
        table.add_row(*(escape(c) for c in r))
    legend = "; ".join(f"{s} = {f}" for f, s in columns if s != f) if use_short else ""
    return table, legend


def print_table(console: Console, title: str, columns: list[tuple[str, str]], rows: list[list[str]]) -> str:
    """Print a :func:`fitting_table`: fitted to a terminal; in a log file (not a terminal) with full headers and every
    name whole on one line. Returns the legend of abbreviated headers ("" when none)."""
    width = console.width
    if not console.is_terminal:
        cells = [max([len(r[i]) for r in rows] + [len(f)]) for i, (f, _) in enumerate(columns)]
        width = max(width, sum(cells) + 3 * len(columns) + 1)
    table, legend = fitting_table(title, columns, rows, width)
    (console if width == console.width else Console(file=console.file, width=width, color_system=None)).print(table)
    return legend


RUN_COLUMNS = [("task", "task"), ("metric", "metric"), ("value", "value"), ("failures", "fail"), ("attributed", "attr"),
               ("clean rate", "clean"), ("median Δℓ", "Δℓ"), ("ΣR/Δℓ", "ΣR/Δℓ")]


def print_summary(summary: dict, console: Console | None = None) -> None:
    console = console or Console(stderr=True)
    rows, details = [], []
    for name, t in summary.get("tasks", {}).items():
        rows.append([name, t["metric"] or "–", _fmt(t["accuracy"], ".4f"), str(t["failures"]), str(t["attributed"]),
                     _fmt(t["clean_case_rate"], ".2f"), _fmt(t["median_delta"], ".2f"), _fmt(t["median_conservation_ratio"], ".2f")])
        if t["skipped"]:
            details.append(f"[bold]{escape(name)}[/] skipped: " + "; ".join(escape(f"{v}× {k}") for k, v in t["skipped"].items()))
        if t["errors"]:  # never called "skipped": an error is not a judgement on the case
            details.append(f"[bold red]{escape(name)} errors:[/] " + "; ".join(escape(f"{v}× {k}") for k, v in t["errors"].items()))
        for cause, n in (t.get("fallbacks") or {}).items():
            details.append(f"[bold]{escape(name)}[/] fallback ({n}×): " + escape(cause))
        if t.get("truncated"):
            details.append(f"[yellow]{escape(name)}: {t['truncated']} explained contexts were cut from the left to fit the "
                           "length limit (the question may be missing): raise --lrp_max_length[/]")
        if t["top_wrong_tokens"]:
            details.append(f"[bold]{escape(name)}[/] tokens pushing towards the wrong answer: "
                           + ", ".join(escape(f"{tok!r}×{n}") for tok, n in t["top_wrong_tokens"][:8]))
        cut = (t.get("locate") or {}).get("reached_max_gen_toks")
        if cut:
            details.append(f"[yellow]{escape(name)}: {cut} failures stopped at max_gen_toks before the task's stop "
                           "sequence (their answer may be missing only because the output was cut; the located step "
                           "may be right work): raise it with --gen_kwargs max_gen_toks=N[/]")
    located = {n: t["locate"]["confidence"] for n, t in summary.get("tasks", {}).items()
               if isinstance((t.get("locate") or {}).get("confidence"), dict)}
    columns = RUN_COLUMNS
    if located:  # generate_until tasks: how the explained tokens were found
        columns = RUN_COLUMNS + [("confirmed / single / fallback / none", "c/s/f/n")]
        for row, name in zip(rows, summary.get("tasks", {})):
            c = located.get(name)
            row.append("–" if c is None else "/".join(str(c[k]) for k in ("confirmed", "single", "fallback", "none")))
        for name, c in located.items():
            share = c["share"]
            details.append(f"[bold]{escape(name)}[/] locations: " + ", ".join(
                f"{c[k]} {k} ({share[k]:.0%})" for k in ("confirmed", "single", "fallback", "none") if c[k])
                + ("" if c["confirmed"] else " — none confirmed: the explained tokens are candidates, check them"))
    title = f"lm-eval-lrp: failures explained ({summary.get('rule')}; clean cases: Δℓ > {summary.get('min_delta')})"
    legend = print_table(console, title, columns, rows)
    if legend:
        console.print(escape(legend), highlight=False, soft_wrap=True)
    for line in details:
        console.print(line, highlight=False, markup=True, soft_wrap=True)
    for path in summary.get("files") or []:
        console.print(f"[bold]attributions:[/] {escape(path)}", soft_wrap=True)
