"""The comparison page: ``compare.html`` and ``compare.json`` from the summaries of :mod:`lm_eval_lrp.compare`.

Reads summaries only (plain dicts); never runs a model.
"""

from __future__ import annotations

import json
from pathlib import Path

from .page import page
from .svg import BLUE, RED, esc, fmt, grouped_bars, pattern_chart, scatter


def render_html(summaries: list[dict]) -> str:
    """One page for one or more comparisons (A against each B)."""
    parts = []
    for n, s in enumerate(summaries):
        a, b = s["a"]["name"], s["b"]["name"]
        o = s["overall"]
        parts.append(f'<h2 id="cmp{n}">A: {esc(a)} &nbsp;vs&nbsp; B: {esc(b)}</h2>')
        parts.append(f'<p class="meta">A run {esc(s["a"]["run"])} · B run {esc(s["b"]["run"])} · rule {esc(s["rule"])}</p>')
        for note in s["notes"]:
            parts.append(f'<p class="note">✓ {esc(note)}</p>' if "identical" in note else f'<p class="warn">{esc(note)}</p>')
        rows = "".join(f"<tr><td>{esc(r['task'])}</td><td>{esc(r['metric'])}</td><td class=num>{fmt(r['a'], '.4f')}</td>"
                       f"<td class=num>{fmt(r['b'], '.4f')}</td><td class=num>{fmt(r['difference'], '+.4f')}</td></tr>" for r in s["accuracy"])
        parts.append("<h3>Accuracy</h3><table><tr><th>task</th><th>metric</th><th class=num>A</th><th class=num>B</th>"
                     f"<th class=num>B − A</th></tr>{rows}</table>")
        rate = fmt(o["corrected_rate"], ".0%") if o["corrected_rate"] is not None else "–"
        parts.append(f"<h3>A's failures on B</h3><p>{o['cases']} attributed failure(s) of A re-explained on B (same token ids, "
                     f"position, target and contrast): <b>{o['corrected']} corrected</b> (Δℓ_B &lt; 0, {rate}); median Δℓ "
                     f"{fmt(o['median_delta_a'], '+.3f')} on A → {fmt(o['median_delta_b'], '+.3f')} on B. B's own verdict on "
                     "these documents: " + esc(", ".join(f"{k} {v}" for k, v in o["b_outcome"].items()) or "–") + ".</p>")
        pts = [{"x": c["delta_a"], "y": c["delta_b"], "colour": BLUE if c["corrected"] else RED,
                "label": f"{c['task']} doc {c['doc_id']}: Δℓ A {c['delta_a']:+.3f}, B {c['delta_b']:+.3f} "
                         f"({'corrected' if c['corrected'] else 'not corrected'}; {c['target']['token']!r} vs {c['contrast']['token']!r})"}
               for c in s["cases"] if c["delta_a"] is not None]
        chart = scatter(pts, "Δℓ of A's failures: A vs B", "Δℓ on A", "Δℓ on B") if pts else "<p>No cases.</p>"
        legend = (f'<p class="meta"><span style="color:{BLUE}">●</span> corrected (Δℓ_B &lt; 0) · '
                  f'<span style="color:{RED}">●</span> not corrected · dashed: y = x</p>')
        seg = o["segments_normalised"]
        charts = []
        for group, title in (("corrected", "corrected cases"), ("not_corrected", "cases not corrected")):
            names = list(seg.get(group, {}))
            if not names or not any(seg[group][k]["n"] for k in names):
                continue
            charts.append(grouped_bars(names, [("A", "#78909c", [seg[group][k]["a"] for k in names]),
                                               ("B", "#37474f", [seg[group][k]["b"] for k in names])],
                                       f"Relevance by segment, {title} (÷ Σ|R|)", "mean share of Σ|R|"))
        parts.append(f'<div class="grid"><div>{chart}{legend}</div><div>' + "".join(charts)
                     + '<p class="meta">Positive: towards A\'s wrong token; negative: towards the gold token.</p></div></div>')
        pat = {f"A (all {o['cases']})": o["patterns_a"], "B (not corrected)": o["patterns_b_not_corrected"]}
        pat.update({f"A · {t}": v["patterns_a"] for t, v in s["tasks"].items()} if len(s["tasks"]) > 1 else {})
        tops = "".join(f"<tr><td><span class=chip>{esc(repr(x['token']))}</span></td><td class=num>{x['count']}</td>"
                       f"<td class=num>{x['still_top_on_b']}</td></tr>" for x in o["top_tokens_a"])
        parts.append('<div class="grid"><div>' + pattern_chart(pat, "Failure patterns") + "</div><div><h4>Top tokens towards the "
                     f"wrong answer on A, and on B</h4><p class=meta>mean top-5 overlap (Jaccard) {fmt(o['mean_top_overlap'], '.2f')}</p>"
                     "<table class=small><tr><th>token (top-5 on A)</th><th>cases</th><th>still top-5 on B</th></tr>"
                     f"{tops}</table></div></div>")
        if s["tasks"]:
            rows = "".join(f"<tr><td>{esc(t)}</td><td class=num>{v['cases']}</td><td class=num>{v['corrected']}</td>"
                           f"<td class=num>{fmt(v['corrected_rate'], '.0%')}</td><td class=num>{fmt(v['median_delta_a'], '+.3f')}</td>"
                           f"<td class=num>{fmt(v['median_delta_b'], '+.3f')}</td></tr>" for t, v in s["tasks"].items())
            parts.append("<h3>Per task</h3><table><tr><th>task</th><th class=num>cases</th><th class=num>corrected</th>"
                         "<th class=num>rate</th><th class=num>median Δℓ A</th><th class=num>median Δℓ B</th></tr>" + rows + "</table>")
        rows = []
        for c in sorted(s["cases"], key=lambda c: (c["task"], c["delta_b"])):
            ta = " ".join(esc(repr(x["token"])) for x in c["top_tokens_a"][:3])
            tb = " ".join(esc(repr(x["token"])) for x in c["top_tokens_b"][:3])
            rows.append(f'<tr class="rrow"><td>{esc(c["task"])}</td><td>{esc(c["doc_id"])}</td>'
                        f'<td><span class="chip t">{esc(repr(c["target"]["token"]))}</span> vs <span class="chip c">{esc(repr(c["contrast"]["token"]))}</span></td>'
                        f"<td class=num>{fmt(c['delta_a'], '+.3f')}</td><td class=num>{fmt(c['delta_b'], '+.3f')}</td>"
                        f"<td>{'corrected' if c['corrected'] else 'no'}</td><td>{esc(c['b_outcome'])}</td>"
                        f"<td><span class=chip>{esc(repr(c['b_top1']['token']))}</span></td><td>{esc(c['pattern_a'])} → {esc(c['pattern_b'] or '–')}</td>"
                        f"<td class=mono>{ta}</td><td class=mono>{tb}</td></tr>")
        parts.append('<h3>Cases</h3><div class="toolbar"><input id="filter" placeholder="filter cases…"></div>'
                     "<table class=small><tr><th>task</th><th>doc</th><th>target vs contrast</th><th>Δℓ A</th><th>Δℓ B</th>"
                     "<th>corrected</th><th>B's verdict</th><th>B's top token</th><th>pattern A → B</th><th>top tokens A</th>"
                     "<th>top tokens B</th></tr>" + "".join(rows) + "</table>")
        if s["errors"]:
            parts.append("<h3>Errors</h3><ul>" + "".join(f"<li>{esc(e['task'])} doc {esc(e['doc_id'])}: {esc(e['error'])}</li>"
                                                         for e in s["errors"]) + "</ul>")
    title = "lm-eval-lrp compare"
    subtitle = " · ".join(f"A {s['a']['name']} vs B {s['b']['name']}" for s in summaries)
    return page(title, subtitle, "".join(parts))


def write_outputs(summaries: list[dict], out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out / "compare.html", out / "compare.json"
    html_path.write_text(render_html(summaries), encoding="utf-8")
    payload = summaries[0] if len(summaries) == 1 else {"format": "lm-eval-lrp-compare/1", "comparisons": summaries}
    json_path.write_text(json.dumps(payload, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    return html_path, json_path
