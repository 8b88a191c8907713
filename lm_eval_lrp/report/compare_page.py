"""The comparison page: ``compare.html`` and ``compare.json`` from the summaries of :mod:`lm_eval_lrp.reexplain`
(run 1 against each other run) and their N-run view (:mod:`lm_eval_lrp.report.trend`).

Reads summaries only (plain dicts); never runs a model.
"""

from __future__ import annotations

import json
from pathlib import Path

from markupsafe import Markup

from .render import render
from .svg import BLUE, RED, grouped_bars, line_chart, pattern_chart, scatter
from .trend import trend

SERIES = ["#37474f", "#c62828", "#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#8d6e63"]


def _trend_charts(t: dict) -> list[Markup]:
    labels = [f"{i + 1}: {r['label']}" for i, r in enumerate(t["runs"])]
    if len(labels) < 2:
        return []
    charts = [line_chart(labels, [(a["task"], SERIES[i % len(SERIES)], a["by_run"]) for i, a in enumerate(t["accuracy"])],
                         "Accuracy per run", "accuracy")]
    if t["cases"]:
        per = t["per_run"]
        charts.append(line_chart(labels, [("median Δℓ", RED, [p["median_delta"] for p in per]),
                                          ("mean ΣR", "#37474f", [p["mean_sum"] for p in per])],
                                 "Run 1's failures: Δℓ and total relevance", "logit units"))
        charts.append(line_chart(labels, [("corrected", BLUE, [p["corrected"] for p in per]),
                                          ("not corrected", RED, [p["not_corrected"] for p in per])],
                                 "Run 1's failures: corrected or not", "cases"))
        charts.append(line_chart(labels, [(g, SERIES[i % len(SERIES)], [p["segments"].get(g) for p in per])
                                          for i, g in enumerate(t["segments"])],
                                 "Relevance by segment (mean share of Σ|R|)", "share"))
    return [Markup(c) for c in charts]


def _pair_charts(s: dict) -> dict:
    o = s["overall"]
    pts = [{"x": c["delta_a"], "y": c["delta_b"], "colour": BLUE if c["corrected"] else RED,
            "label": f"{c['task']} doc {c['doc_id']}: Δℓ A {c['delta_a']:+.3f}, B {c['delta_b']:+.3f} "
                     f"({'corrected' if c['corrected'] else 'not corrected'}; {c['target']['token']!r} vs {c['contrast']['token']!r})"}
           for c in s["cases"] if c["delta_a"] is not None]
    seg = o.get("segments_normalised") or {}
    segments = []
    for group, title in (("corrected", "corrected cases"), ("not_corrected", "cases not corrected")):
        names = list(seg.get(group, {}))
        if names and any(seg[group][k]["n"] for k in names):
            segments.append(Markup(grouped_bars(names, [("A", "#78909c", [seg[group][k]["a"] for k in names]),
                                                        ("B", "#37474f", [seg[group][k]["b"] for k in names])],
                                                f"Relevance by segment, {title} (÷ Σ|R|)", "mean share of Σ|R|")))
    pat = {f"A (all {o['cases']})": o.get("patterns_a") or {}, "B (not corrected)": o.get("patterns_b_not_corrected") or {}}
    if len(s["tasks"]) > 1:
        pat.update({f"A · {t}": v["patterns_a"] for t, v in s["tasks"].items()})
    return {"scatter": Markup(scatter(pts, "Δℓ of A's failures: A vs B", "Δℓ on A", "Δℓ on B")) if pts else Markup("<p>No cases.</p>"),
            "segments": segments, "patterns": Markup(pattern_chart(pat, "Failure patterns"))}


def render_html(summaries: list[dict], t: dict | None = None) -> str:
    """One page: the N-run view, then run 1 against each other run."""
    t = t or trend(summaries)
    subtitle = " · ".join(f"{i + 1}: {r['name']}" for i, r in enumerate(t["runs"]))
    return render("compare.html", title="lm-eval-lrp compare", subtitle=subtitle, trend=t, trend_charts=_trend_charts(t),
                  comparisons=summaries, charts=[_pair_charts(s) for s in summaries])


def write_outputs(summaries: list[dict], out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out / "compare.html", out / "compare.json"
    t = trend(summaries)
    html_path.write_text(render_html(summaries, t), encoding="utf-8")
    payload = {"format": "lm-eval-lrp-compare/2", "runs": t["runs"], "trend": {k: v for k, v in t.items() if k != "runs"},
               "comparisons": summaries}
    json_path.write_text(json.dumps(payload, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    return html_path, json_path
