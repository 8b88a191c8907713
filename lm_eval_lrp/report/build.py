"""Assemble the static report of one run: an index (per task) and one view per record, in a single HTML file."""

from __future__ import annotations

from pathlib import Path

from ..artifacts import Run, load_run
from ..patterns import Thresholds
from . import heatmap
from .graph import graph_path, load_graph, render_section
from .page import page
from .summary import SEGMENT_ORDER, TaskSummary, model_args, pattern_of, segments_of, summarise
from .svg import PATTERN_COLOURS, diverging_bars, esc, fmt, pattern_chart

def _tok(s) -> str:
    return f'<span class="chip">{esc(repr(s) if s is not None else "–")}</span>'


def _pattern_badge(label: str) -> str:
    return f'<span class="pat" style="background:{PATTERN_COLOURS.get(label, "#999")}">{esc(label)}</span>'


def _order(recs: list[dict]) -> list[dict]:
    rank = {"attributed": 0, "skipped": 1, "error": 2}
    return sorted(recs, key=lambda r: (rank.get(r.get("status"), 3), -(r.get("delta") or 0.0) if r.get("status") == "attributed" else 0, r.get("doc_id", 0)))


class ReportBuilder:
    def __init__(self, run: Run, top: int | None = None, thresholds: Thresholds | None = None, collapse_min: int = 40):
        self.run, self.top, self.th, self.collapse_min = run, top, thresholds or Thresholds(), collapse_min
        self.graphs_found = 0
        self.rendered = 0

    # --- index ------------------------------------------------------------------------------------------------

    def header(self) -> tuple[str, str]:
        res = self.run.results or {}
        args = model_args(res)
        model = args.get("pretrained") or res.get("model_name") or self.run.path.name
        lrp = res.get("lrp") or {}
        bits = [f"run {self.run.path}", f"model {model}"]
        for key in ("gguf_file", "revision"):
            if args.get(key):
                bits.append(f"{key} {args[key]}")
        if lrp.get("rule"):
            bits.append(f"rule {lrp['rule']}, clean cases Δℓ > {lrp.get('min_delta')}")
        if res.get("lm_eval_version"):
            bits.append(f"lm-eval {res['lm_eval_version']}")
        return f"lm-eval-lrp report — {model}", " · ".join(bits)

    def index(self, summaries: list[TaskSummary], ids: dict[tuple, str]) -> str:
        out = ['<div id="index">']
        res = self.run.results
        if res is None:
            out.append('<p class="warn">No lm-eval results JSON found beside the records: accuracy is not shown.</p>')
        elif (res.get("lrp") or {}).get("error"):
            out.append(f'<p class="warn">The attribution step reported an error: {esc(res["lrp"]["error"])}</p>')
        for note in (res or {}).get("lrp", {}).get("notes", []) or []:
            out.append(f'<p class="warn">{esc(note)}</p>')
        out.append("<h2>Tasks</h2><table><tr><th>task</th><th>metric</th><th class=num>value</th><th class=num>failures</th>"
                   "<th class=num>attributed</th><th>skipped (by reason)</th><th>errors</th><th class=num>clean-case rate</th>"
                   "<th class=num>median Δℓ</th><th class=num>median ΣR/Δℓ</th><th>patterns</th></tr>")
        for s in summaries:
            skipped = "<br>".join(f"{n}× {esc(k)}" for k, n in s.skipped.items()) or "–"
            errors = "<br>".join(f"{n}× {esc(k)}" for k, n in s.errors.items()) or "–"
            pats = " ".join(f"{_pattern_badge(k)}&nbsp;{n}" for k, n in s.patterns.items() if n) or "–"
            out.append(f'<tr><td><a href="#task-{esc(_slug(s.name))}">{esc(s.name)}</a></td><td>{esc(s.metric or "–")}</td>'
                       f"<td class=num>{fmt(s.accuracy, '.4f')}</td><td class=num>{s.failures}</td><td class=num>{s.attributed}</td>"
                       f"<td>{skipped}</td><td>{errors}</td><td class=num>{fmt(s.clean_case_rate, '.2f')}</td>"
                       f"<td class=num>{fmt(s.median_delta, '.3f')}</td><td class=num>{fmt(s.median_ratio, '.2f')}</td><td>{pats}</td></tr>")
        out.append("</table>")
        dist = {s.name: s.patterns for s in summaries}
        out.append('<div class="grid"><div>' + pattern_chart(dist, "Failure patterns per task (attributed failures)") + "</div>")
        out.append('<div class="card note"><b>Patterns</b> (computed, see <code>lm_eval_lrp.patterns</code>): '
                   f"<b>URT</b> — the query (and answer so far) supports the gold token with less than "
                   f"{self.th.urt_max_support:.0%} of Σ|R| (or pushes towards the wrong token); <b>OIT</b> — few-shot, "
                   f"instruction and special tokens spend at least {self.th.oit_min_share:.0%} of Σ|R| pushing towards the "
                   "wrong token; <b>n/a</b> — no segment labels to judge by.</div></div>")
        tops = [(s.name, s.top_wrong_tokens) for s in summaries if s.top_wrong_tokens]
        if tops:
            out.append("<h3>Tokens most often pushing towards the wrong answer</h3><ul>")
            for name, toks in tops:
                out.append(f"<li><b>{esc(name)}</b>: " + ", ".join(f"{_tok(t)}×{n}" for t, n in toks[:10]) + "</li>")
            out.append("</ul>")
        out.append('<h2>Records</h2><div class="toolbar"><input id="filter" placeholder="filter records (task, token, reason, pattern…)">'
                   '<button data-act="all" title="show every record view below the index">show all record views</button></div>')
        for s in summaries:
            recs = self.run.tasks[s.name].records if s.name in self.run.tasks else []
            out.append(f'<h3 id="task-{esc(_slug(s.name))}">{esc(s.name)} <span class="meta">({len(recs)} records)</span></h3>')
            if not recs:
                out.append("<p class=meta>No attribution records for this task.</p>")
                continue
            out.append("<table class=small><tr><th>doc</th><th>status</th><th class=num>Δℓ</th><th>target (wrong)</th>"
                       "<th>contrast (correct)</th><th>pattern</th><th>note</th></tr>")
            for r in _order(recs):
                rid = ids.get((s.name, r.get("doc_id")))
                doc = esc(r.get("doc_id"))
                link = f'<a href="#{rid}">{doc}</a>' if rid else f'{doc} <span class="meta">(beyond --top)</span>'
                status = r.get("status", "?")
                pat = pattern_of(self.run, r, self.th, s.name).label if status == "attributed" else ""
                note = r.get("reason") or ""
                if status == "attributed" and (r.get("conservation") or {}).get("ratio") is not None:
                    note = f"ΣR/Δℓ {r['conservation']['ratio']:.2f}"
                out.append(f'<tr class="rrow"><td>{link}</td><td><span class="badge {esc(status)}">{esc(status)}</span></td>'
                           f"<td class=num>{fmt(r.get('delta'), '+.3f')}</td><td>{_tok((r.get('target') or {}).get('token'))}</td>"
                           f"<td>{_tok((r.get('contrast') or {}).get('token'))}</td><td>{_pattern_badge(pat) if pat else ''}</td>"
                           f"<td>{esc(note)}</td></tr>")
            out.append("</table>")
        out.append("</div>")
        return "".join(out)

    # --- one record -------------------------------------------------------------------------------------------

    def record_view(self, r: dict, rid: str, prev: str | None, nxt: str | None, task_key: str | None = None) -> str:
        task, status = r.get("task"), r.get("status", "?")
        task_key = task_key or task
        nav = ['<div class="nav"><a href="#">↑ index</a>']
        if prev:
            nav.append(f'<a href="#{prev}">← previous</a>')
        if nxt:
            nav.append(f'<a href="#{nxt}">next →</a>')
        nav.append("</div>")
        out = [f'<section class="rec" id="{rid}">', "".join(nav),
               f'<h2>{esc(task)} · doc {esc(r.get("doc_id"))} <span class="badge {esc(status)}">{esc(status)}</span>']
        pattern = pattern_of(self.run, r, self.th, task_key) if status == "attributed" else None
        if pattern:
            out.append(" " + _pattern_badge(pattern.label))
        out.append("</h2>")
        if status != "attributed":
            out.append(f'<p class="warn">{esc(status)}: {esc(r.get("reason"))}' +
                       (f"<br>{esc(r['advice'])}" if r.get("advice") else "") + "</p>")
        out.append('<div class="grid">' + self._facts(r) + self._outputs(r) + "</div>")
        if status == "attributed":
            out.append(self._heatmap(r, rid))
            out.append('<div class="grid">' + self._segments(r, pattern, task_key) + self._conservation(r) + "</div>")
            out.append(self._nodes(r, task_key))
            out.append(self._graph(r, task_key))
        out.append("</section>")
        return "".join(out)

    def _facts(self, r: dict) -> str:
        t, c = r.get("target") or {}, r.get("contrast") or {}
        rows = [
            ("target (wrong, preferred)", f'<span class="chip t">{esc(repr(t.get("token")))}</span> id {esc(t.get("id"))} · logit {fmt(t.get("logit"), ".3f")}'),
            ("contrast (correct)", f'<span class="chip c">{esc(repr(c.get("token")))}</span> id {esc(c.get("id"))} · logit {fmt(c.get("logit"), ".3f")}'),
            ("Δℓ = ℓ(target) − ℓ(contrast)", fmt(r.get("delta"), "+.4f")),
            ("kind · metric", f"{esc(r.get('kind'))} · {esc(r.get('metric'))} " + esc(", ".join(f"{k}={v:g}" for k, v in (r.get("metrics") or {}).items() if isinstance(v, (int, float))))),
        ]
        if r.get("status") == "attributed":
            rows.append(("rule · position · tokens", f"{esc(r.get('rule'))} · {esc(r.get('position'))} · {len(r.get('tokens') or [])} "
                         f"({esc(r.get('n_prompt_tokens'))} prompt)" + (f" · {esc(r.get('truncated_tokens'))} cut from the left" if r.get("truncated_tokens") else "")))
        rows.append(("filter · doc hash", f"{esc(r.get('filter'))} · <span class=mono>{esc((r.get('doc_hash') or '')[:16])}</span>"))
        table = '<table class="kv small">' + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows) + "</table>"
        topk = r.get("topk") or []
        if topk:
            body = "".join(
                f"<tr><td>{i + 1}</td><td>{_tok(x.get('token'))}</td><td class=num>{fmt(x.get('logit'), '.3f')}</td><td>"
                + ("target" if x.get("id") == t.get("id") else "contrast" if x.get("id") == c.get("id") else "") + "</td></tr>"
                for i, x in enumerate(topk))
            table += f"<h4>Top-{len(topk)} next tokens</h4><table class=small><tr><th>#</th><th>token</th><th>logit</th><th></th></tr>{body}</table>"
        return f"<div>{table}</div>"

    def _outputs(self, r: dict) -> str:
        return ("<div><h4>Model output</h4><pre>" + esc(r.get("model_output") or "") + "</pre><h4>Gold</h4><pre>"
                + esc(r.get("gold") or "") + "</pre><details><summary>prompt text</summary><pre>" + esc(r.get("prompt") or "")
                + "</pre></details></div>")

    def _heatmap(self, r: dict, rid: str) -> str:
        h = heatmap.render(r, rid, collapse_min=self.collapse_min, special_tokens=self.th.special_tokens)
        tokens = r.get("tokens") or []
        rel = r.get("input_relevance") or []

        def jump(i, cls):
            v = rel[i] / h.scale if h.scale else 0.0
            return f'<a class="jump {cls}" href="#{rid}" data-target="{rid}-t{i}">{esc(repr(tokens[i]))} {v:+.2f}</a>'

        special = ", ".join(f"#{i} {esc(repr(tokens[i]))} (R={rel[i]:+.3g})" for i in h.special if i < len(rel) and rel[i] is not None)
        return (
            "<h3>Input relevance</h3>" + heatmap.legend()
            + f'<p class="meta">Normalised by max |R| = {fmt(h.scale, ".4g")} over non-special tokens'
            + (f"; excluded (grey): {special}" if special else "") + (f"; {h.collapsed} low-relevance tokens folded into {h.gaps} stretch(es)" if h.gaps else "") + ".</p>"
            + '<div class="toolbar"><input class="tsearch" placeholder="search tokens…"><button data-act="next">next match</button>'
            + '<span class="count meta"></span>' + ('<button data-act="expand">expand all</button><button data-act="collapse">fold</button>' if h.gaps else "")
            + "</div>"
            + '<div class="jumps small">towards wrong: ' + (" ".join(jump(i, "w") for i in h.top_wrong) or "–")
            + '<br>towards correct: ' + (" ".join(jump(i, "c") for i in h.top_correct) or "–") + "</div>"
            + h.html
        )

    def _segments(self, r: dict, pattern, task_key: str) -> str:
        segs, derived = segments_of(self.run, r, task_key)
        items = [(k, segs[k]) for k in SEGMENT_ORDER if k in segs] + [(k, v) for k, v in segs.items() if k not in SEGMENT_ORDER]
        chart = diverging_bars(items, "Relevance by prompt segment", note="red: towards the wrong token · blue: towards the correct one")
        if derived:
            chart += ('<p class="meta">The run recorded no segment sums for this record; these are derived from the prompt, '
                      "the task configuration and the token strings.</p>")
        why = f'<p class="meta">Pattern {_pattern_badge(pattern.label)}: {esc(pattern.reason)}.</p>' if pattern else ""
        return f"<div>{chart}{why}</div>"

    def _conservation(self, r: dict) -> str:
        c = r.get("conservation") or {}
        if not c:
            return "<div></div>"
        blocks = c.get("blocks") or []
        text = (f'<p class="meta">ΣR(input) = {fmt(c.get("sum_input"), "+.4f")} · Δℓ = {fmt(c.get("delta"), "+.4f")} · '
                f'ratio ΣR/Δℓ = {fmt(c.get("ratio"), ".3f")} · lost in the head {fmt(c.get("head_lost"), "+.3g")}</p>')
        scale = abs(c.get("delta") or 0.0) or 1.0
        split = any(abs(b.get("mlp_lost") or 0.0) > 1e-3 * scale for b in blocks)
        items = []
        for b in blocks:
            if split:
                items.append((f"block {b.get('layer')} attn", b.get("attn_lost")))
                items.append((f"block {b.get('layer')} mlp", b.get("mlp_lost")))
            else:
                items.append((f"block {b.get('layer')}", b.get("lost")))
        chart = diverging_bars(items[:96], "Relevance lost per block (out − in)",
                               note="" if split else "attention and MLP together (the MLPs conserve)") if items else ""
        return f"<div><h4>Conservation</h4>{text}{chart}</div>"

    def _nodes(self, r: dict, task_key: str) -> str:
        if not r.get("node_relevance_file") or task_key not in self.run.tasks:
            return ""
        try:
            loaded = self.run.tasks[task_key].node_relevance(r)
        except Exception as err:  # noqa: BLE001 - a missing or broken sidecar never stops the report
            return f'<p class="meta">node relevance unreadable: {esc(type(err).__name__)}: {esc(err)}</p>'
        if loaded is None:
            return ""
        names, tensor = loaded
        return "<details><summary>Relevance through the layers (node relevance)</summary>" + node_heatmap(names, tensor.tolist(), r) + "</details>"

    def _graph(self, r: dict, task_key: str) -> str:
        path = graph_path(self.run.path, task_key, r.get("doc_id"))
        if path.parent != self.run.path:  # a task name with a path separator never leads elsewhere
            return '<h3>Attribution graph</h3><p class="meta">No graph for this record.</p>'
        if not path.exists():
            return f'<h3>Attribution graph</h3><p class="meta">No graph for this record ({esc(path.name)} not found beside the records).</p>'
        try:
            graph = load_graph(path)
        except (ValueError, OSError) as err:
            return f'<h3>Attribution graph</h3><p class="warn">{esc(err)}</p>'
        self.graphs_found += 1
        return "<h3>Attribution graph</h3>" + render_section(graph)

    # --- the page ---------------------------------------------------------------------------------------------

    def html(self) -> str:
        summaries = summarise(self.run, self.th)
        ids: dict[tuple, str] = {}
        views: list[tuple[str, dict]] = []
        for s in summaries:
            if s.name not in self.run.tasks:
                continue
            attributed_seen = 0
            for r in _order(self.run.tasks[s.name].records):
                if r.get("status") == "attributed":
                    attributed_seen += 1
                    if self.top is not None and attributed_seen > self.top:
                        continue
                rid = f"r{len(views)}"
                ids[(s.name, r.get("doc_id"))] = rid
                views.append((s.name, r))
        parts = [self.index(summaries, ids)]
        for i, (task_key, r) in enumerate(views):
            parts.append(self.record_view(r, f"r{i}", f"r{i - 1}" if i else None, f"r{i + 1}" if i + 1 < len(views) else None,
                                          task_key))
        self.rendered = len(views)
        title, subtitle = self.header()
        return page(title, subtitle, "".join(parts))


def node_heatmap(names: list[str], values: list[list[float]], record: dict, max_cols: int = 64) -> str:
    """Layers × tokens on a canvas drawn by the page's script (compact: values quantised to −99…99 per row).

    Each row is normalised by its own max |R| over non-special tokens; special tokens are drawn grey. Long prompts
    keep the ``max_cols`` positions with the strongest input relevance (and the explained position).
    """
    import json

    from ..patterns import special_positions

    tokens = record.get("tokens") or []
    special = special_positions(record)
    n_tok = len(values[0]) if values else 0
    cols = list(range(n_tok))
    if n_tok > max_cols:
        rel = record.get("input_relevance") or [0.0] * n_tok
        ranked = sorted((i for i in range(n_tok) if i not in special), key=lambda i: -abs(rel[i] or 0.0))
        cols = sorted(set(ranked[: max_cols - 1]) | {n_tok - 1})
    rows = []
    for vals in values:
        m = max((abs(vals[i]) for i in cols if i not in special), default=0.0) or 1.0
        rows.append(",".join("s" if i in special else str(int(round(99 * max(-1.0, min(1.0, vals[i] / m))))) for i in cols))
    labels = [repr(tokens[i])[:12] if i < len(tokens) else f"#{i}" for i in cols]
    note = f"{len(cols)} of {n_tok} positions (strongest input relevance)" if len(cols) < n_tok else f"{n_tok} positions"
    return (f'<p class="meta">Rows: residual-stream nodes (bottom: embeddings, top: last block); {note}; each row '
            "normalised by its own max |R|; hover for values.</p>"
            f'<div class="scroll"><canvas class="nodes" data-rows="{esc(json.dumps(names))}" '
            f'data-cols="{esc(json.dumps(cols))}" data-labels="{esc(json.dumps(labels))}" data-v="{";".join(rows)}"></canvas></div>')


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(name))


def build_report(run_dir: str | Path, output: str | Path | None = None, top: int | None = None,
                 thresholds: Thresholds | None = None) -> tuple[Path, ReportBuilder, list[TaskSummary]]:
    """Write the report of the run at ``run_dir`` (default ``<run>/report.html``); returns (path, builder, summaries)."""
    run = load_run(run_dir)
    builder = ReportBuilder(run, top=top, thresholds=thresholds)
    text = builder.html()
    out = Path(output) if output else run.path / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out, builder, summarise(run, builder.th)
