"""Small inline SVG charts (no scripts, no external resources). Every text that comes from data is escaped."""

from __future__ import annotations

import html
import math

RED = "#c62828"  # support of the wrong (target) token
BLUE = "#1565c0"  # support of the correct (contrast) token
GREY = "#9e9e9e"
PATTERN_COLOURS = {"URT": "#e69f00", "OIT": "#8e44ad", "URT+OIT": "#b03a2e", "none": "#2e8b57", "n/a": "#cfcfcf"}


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def fmt(x, spec: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x, spec)


def _svg(width: float, height: float, body: list[str], label: str) -> str:
    return (f'<svg class="chart" role="img" aria-label="{esc(label)}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}">'
            + "".join(body) + "</svg>")


def _text(x, y, s, anchor="start", cls="", size=12, extra="") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{c}{extra}>{esc(s)}</text>'


def short(s: str, n: int = 28) -> str:
    s = str(s)
    return s if len(s) <= n else s[: n - 1] + "…"


def pattern_chart(dist: dict[str, dict[str, int]], title: str = "Failure patterns per task") -> str:
    """The paper's Figure 1: per task, a stacked bar of the share of attributed failures in each pattern."""
    labels = list(PATTERN_COLOURS)
    rows = [(task, counts) for task, counts in dist.items()]
    left, bar_w, row_h = 190, 420, 26
    height = 48 + row_h * max(len(rows), 1) + 28
    width = left + bar_w + 70
    body = [_text(8, 18, title, size=14, cls="ttl")]
    for r, (task, counts) in enumerate(rows):
        y = 34 + r * row_h
        total = sum(counts.get(k, 0) for k in labels)
        body.append(_text(left - 8, y + 15, short(task), anchor="end"))
        x = left
        if total == 0:
            body.append(f'<rect x="{left}" y="{y + 3}" width="{bar_w}" height="{row_h - 8}" fill="#f0f0f0"/>')
            body.append(_text(left + 6, y + 15, "no attributed failures", size=11))
            continue
        for k in labels:
            n = counts.get(k, 0)
            if not n:
                continue
            w = bar_w * n / total
            body.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" fill="{PATTERN_COLOURS[k]}">'
                        f"<title>{esc(task)}: {esc(k)} {n}/{total} ({n / total:.0%})</title></rect>")
            if w > 26:
                body.append(_text(x + w / 2, y + 15, str(n), anchor="middle", size=11, extra=' fill="#fff"'))
            x += w
        body.append(_text(left + bar_w + 6, y + 15, f"n={total}", size=11))
    ly = 34 + row_h * max(len(rows), 1) + 10
    lx = left
    for k in labels:
        body.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{PATTERN_COLOURS[k]}"/>')
        body.append(_text(lx + 16, ly + 10, k, size=11))
        lx += 24 + 8 * len(k) + 10
    return _svg(width, height, body, title)


def diverging_bars(items: list[tuple[str, float | None]], title: str = "", width: int = 460, note: str = "") -> str:
    """Horizontal bars around 0: positive (towards the wrong token) red, negative blue."""
    items = [(k, v) for k, v in items if v is not None]
    left, row_h = 130, (22 if len(items) <= 12 else 15)
    plot_w = width - left - 70
    m = max((abs(v) for _, v in items), default=0.0) or 1.0
    top = 26 if title else 6
    height = top + row_h * max(len(items), 1) + (20 if note else 6)
    mid = left + plot_w / 2
    body = [_text(8, 16, title, size=13, cls="ttl")] if title else []
    body.append(f'<line x1="{mid:.1f}" y1="{top - 2}" x2="{mid:.1f}" y2="{top + row_h * max(len(items), 1)}" stroke="#888"/>')
    for r, (k, v) in enumerate(items):
        y = top + r * row_h
        w = (plot_w / 2) * abs(v) / m
        x = mid if v >= 0 else mid - w
        colour = RED if v >= 0 else BLUE
        body.append(_text(left - 8, y + row_h - 7, short(k, 18), anchor="end", size=12 if row_h > 16 else 10))
        body.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{max(w, 0.5):.1f}" height="{row_h - 6}" fill="{colour}">'
                    f"<title>{esc(k)}: {fmt(v, '+.4g')}</title></rect>")
        tx = mid + w + 4 if v >= 0 else mid + 4  # negative values are labelled right of the axis: never over the names
        body.append(_text(tx, y + row_h - 7, fmt(v, "+.3g"), size=11 if row_h > 16 else 9))
    if not items:
        body.append(_text(left, top + 15, "nothing to show", size=11))
    if note:
        body.append(_text(8, height - 6, note, size=10, cls="note"))
    return _svg(width, height, body, title or "bars")


def grouped_bars(groups: list[str], series: list[tuple[str, str, list[float | None]]], title: str = "",
                 ylabel: str = "", width: int = 560, height: int = 260) -> str:
    """Vertical grouped bars (e.g. segments × models) around a zero line."""
    left, right, top, bottom = 58, 12, 30, 52
    plot_w, plot_h = width - left - right, height - top - bottom
    vals = [v for _, _, vs in series for v in vs if v is not None]
    hi, lo = max(vals + [0.0]), min(vals + [0.0])
    if hi == lo:
        hi = lo + 1.0
    pad = 0.08 * (hi - lo)
    hi, lo = hi + (pad if hi > 0 else 0), lo - (pad if lo < 0 else 0)

    def y_of(v):
        return top + plot_h * (hi - v) / (hi - lo)

    body = [_text(8, 18, title, size=13, cls="ttl")] if title else []
    body.append(f'<line x1="{left}" y1="{y_of(0):.1f}" x2="{width - right}" y2="{y_of(0):.1f}" stroke="#555"/>')
    for v in (lo, hi):
        body.append(_text(left - 4, y_of(v) + 4, fmt(v, ".2g"), anchor="end", size=10))
    body.append(_text(left - 4, y_of(0) + 4, "0", anchor="end", size=10))
    if ylabel:
        body.append(f'<text x="12" y="{top + plot_h / 2:.0f}" font-size="11" text-anchor="middle" '
                    f'transform="rotate(-90 12 {top + plot_h / 2:.0f})">{esc(ylabel)}</text>')
    n_g, n_s = max(len(groups), 1), max(len(series), 1)
    gw = plot_w / n_g
    bw = min(28.0, 0.8 * gw / n_s)
    for g, name in enumerate(groups):
        gx = left + g * gw + (gw - bw * n_s) / 2
        for s, (sname, colour, vs) in enumerate(series):
            v = vs[g] if g < len(vs) else None
            if v is None:
                continue
            y0, y1 = sorted((y_of(0), y_of(v)))
            body.append(f'<rect x="{gx + s * bw:.1f}" y="{y0:.1f}" width="{bw - 2:.1f}" height="{max(y1 - y0, 0.5):.1f}" '
                        f'fill="{colour}"><title>{esc(name)} · {esc(sname)}: {fmt(v, "+.4g")}</title></rect>')
        body.append(_text(left + g * gw + gw / 2, top + plot_h + 16, short(name, 16), anchor="middle", size=11))
    lx = left
    for sname, colour, _ in series:
        body.append(f'<rect x="{lx}" y="{height - 18}" width="12" height="12" fill="{colour}"/>')
        body.append(_text(lx + 16, height - 8, short(sname, 30), size=11))
        lx += 30 + 7 * min(len(sname), 30)
    return _svg(width, height, body, title or "grouped bars")


def scatter(points: list[dict], title: str = "", xlabel: str = "x", ylabel: str = "y", size: int = 420) -> str:
    """Points {x, y, colour, label}; the y = x diagonal and the zero lines are drawn."""
    left, bottom, top, right = 56, 46, 30, 16
    w, h = size + left + right, size + top + bottom
    xs = [p["x"] for p in points] + [p["y"] for p in points] + [0.0]
    lo, hi = min(xs), max(xs)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    pad = 0.06 * (hi - lo)
    lo, hi = lo - pad, hi + pad

    def sx(v):
        return left + size * (v - lo) / (hi - lo)

    def sy(v):
        return top + size * (hi - v) / (hi - lo)

    body = [_text(8, 18, title, size=13, cls="ttl")] if title else []
    body.append(f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="none" stroke="#bbb"/>')
    body.append(f'<line x1="{sx(lo):.1f}" y1="{sy(lo):.1f}" x2="{sx(hi):.1f}" y2="{sy(hi):.1f}" stroke="#777" '
                f'stroke-dasharray="5 4"><title>y = x</title></line>')
    body.append(f'<line x1="{left}" y1="{sy(0):.1f}" x2="{left + size}" y2="{sy(0):.1f}" stroke="#444" stroke-width="0.8"/>')
    body.append(f'<line x1="{sx(0):.1f}" y1="{top}" x2="{sx(0):.1f}" y2="{top + size}" stroke="#444" stroke-width="0.8"/>')
    ticks = _ticks(lo, hi)
    for t in ticks:
        body.append(_text(sx(t), top + size + 14, fmt(t, "g"), anchor="middle", size=10))
        body.append(_text(left - 4, sy(t) + 4, fmt(t, "g"), anchor="end", size=10))
    body.append(_text(left + size / 2, h - 8, xlabel, anchor="middle", size=12))
    body.append(f'<text x="14" y="{top + size / 2:.0f}" font-size="12" text-anchor="middle" '
                f'transform="rotate(-90 14 {top + size / 2:.0f})">{esc(ylabel)}</text>')
    for p in points:
        body.append(f'<circle cx="{sx(p["x"]):.1f}" cy="{sy(p["y"]):.1f}" r="4.5" fill="{p.get("colour", BLUE)}" '
                    f'fill-opacity="0.75" stroke="#222" stroke-width="0.4"><title>{esc(p.get("label", ""))}</title></circle>')
    return _svg(w, h, body, title or "scatter")


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / n)) if span > 0 else 1.0
    for mult in (1, 2, 5, 10):
        if span / (step * mult) <= n:
            step *= mult
            break
    start = math.ceil(lo / step) * step
    out, v = [], start
    while v <= hi + 1e-12 and len(out) < 12:
        out.append(round(v, 10))
        v += step
    return out


def histogram(values: list[float], title: str = "", xlabel: str = "", bins: int = 20, width: int = 420,
              height: int = 170, marker: float | None = None, marker_label: str = "") -> str:
    """Counts of ``values`` in equal-width bins; ``marker`` draws a dashed vertical reference line (e.g. 1.0)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    left, right, top, bottom = 40, 12, 24 if title else 8, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    body = [_text(8, 16, title, size=13, cls="ttl")] if title else []
    if not vals:
        body.append(_text(left, top + 20, "nothing to show", size=11))
        return _svg(width, height, body, title or "histogram")
    lo, hi = min(vals), max(vals)
    if marker is not None and math.isfinite(marker):
        lo, hi = min(lo, marker), max(hi, marker)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    step = (hi - lo) / bins
    counts = [0] * bins
    for v in vals:
        counts[min(int((v - lo) / step), bins - 1)] += 1
    peak = max(counts) or 1
    bw = plot_w / bins
    for i, n in enumerate(counts):
        if not n:
            continue
        h = plot_h * n / peak
        a, b = lo + i * step, lo + (i + 1) * step
        body.append(f'<rect x="{left + i * bw:.1f}" y="{top + plot_h - h:.1f}" width="{max(bw - 1, 0.5):.1f}" '
                    f'height="{h:.1f}" fill="#546e7a"><title>{fmt(a, ".3g")} … {fmt(b, ".3g")}: {n}</title></rect>')
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#555"/>')
    for t in _ticks(lo, hi, 5):
        x = left + plot_w * (t - lo) / (hi - lo)
        body.append(_text(x, top + plot_h + 13, fmt(t, "g"), anchor="middle", size=10))
    body.append(_text(left - 4, top + 10, str(peak), anchor="end", size=10))
    if marker is not None and math.isfinite(marker):
        x = left + plot_w * (marker - lo) / (hi - lo)
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="{RED}" stroke-dasharray="4 3">'
                    f"<title>{esc(marker_label or marker)}</title></line>")
    body.append(_text(left + plot_w / 2, height - 4, f"{xlabel} (n={len(vals)})", anchor="middle", size=11))
    return _svg(width, height, body, title or "histogram")


def line_chart(xlabels: list[str], series: list[tuple[str, str, list[float | None]]], title: str = "",
               ylabel: str = "", width: int = 440, height: int = 230) -> str:
    """Trend lines over ordered runs (checkpoints, sizes): one polyline per series, the legend below the plot."""
    per_row = max(1, (width - 60) // 140)
    legend_rows = (len(series) + per_row - 1) // per_row
    left, right, top, bottom = 52, 16, 30, 40 + 16 * legend_rows
    height += 16 * legend_rows
    plot_w, plot_h = width - left - right, height - top - bottom
    vals = [v for _, _, vs in series for v in vs if v is not None and math.isfinite(v)]
    hi, lo = max(vals + [0.0]), min(vals + [0.0])
    if hi == lo:
        hi = lo + 1.0
    pad = 0.08 * (hi - lo)
    hi, lo = hi + pad, lo - (pad if lo < 0 else 0)
    n = max(len(xlabels), 1)

    def x_of(i):
        return left + 14 + ((plot_w - 28) * i / (n - 1) if n > 1 else (plot_w - 28) / 2)

    def y_of(v):
        return top + plot_h * (hi - v) / (hi - lo)

    body = [_text(8, 18, title, size=13, cls="ttl")] if title else []
    body.append(f'<line x1="{left}" y1="{y_of(0):.1f}" x2="{left + plot_w}" y2="{y_of(0):.1f}" stroke="#555"/>')
    for t in _ticks(lo, hi, 5):
        body.append(_text(left - 4, y_of(t) + 4, fmt(t, "g"), anchor="end", size=10))
    if ylabel:
        body.append(f'<text x="12" y="{top + plot_h / 2:.0f}" font-size="11" text-anchor="middle" '
                    f'transform="rotate(-90 12 {top + plot_h / 2:.0f})">{esc(ylabel)}</text>')
    for i, name in enumerate(xlabels):
        anchor = "middle" if 0 < i < n - 1 or n == 1 else "start" if i == 0 else "end"
        x = x_of(i) + (-10 if anchor == "start" else 10 if anchor == "end" else 0)
        body.append(_text(x, top + plot_h + 16, short(name, max(6, int(plot_w / n / 6.5))), anchor=anchor, size=11))
    for r, (sname, colour, vs) in enumerate(series):
        idx = [i for i, v in enumerate(vs) if v is not None and math.isfinite(v)]
        if len(idx) > 1:
            body.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                        + " ".join(f"{x_of(i):.1f},{y_of(vs[i]):.1f}" for i in idx) + '"/>')
        for i in idx:
            body.append(f'<circle cx="{x_of(i):.1f}" cy="{y_of(vs[i]):.1f}" r="3.5" fill="{colour}"><title>{esc(sname)} · '
                        f'{esc(xlabels[i] if i < len(xlabels) else i)}: {fmt(vs[i], "+.4g")}</title></circle>')
        lx = left + 140 * (r % per_row)
        ly = top + plot_h + 28 + 16 * (r // per_row)
        body.append(f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour}"/>')
        body.append(_text(lx + 16, ly + 10, short(sname, 18), size=11))
    return _svg(width, height, body, title or "trend")
