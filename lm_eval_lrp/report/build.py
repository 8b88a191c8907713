"""Assemble the static report of one run: an index page whose size does not grow with the number of records beyond
a compact table (data for the sortable, filterable record list in the page), and the record views in pages of
``chunk`` records beside it (``<report>_records/part_NNNN.html``), opened from the index by a plain link. Everything
works from ``file://``: no server, no network, no fetch.
"""

from __future__ import annotations

import re
from pathlib import Path

from markupsafe import Markup

from ..artifacts import Run
from ..model_args import short_name
from ..patterns import Thresholds, describe_thresholds
from . import heatmap
from .graph_view import graph_path, load_graph, render_section
from .cases import candidates_of, case_line, write_cases
from .render import render, script_json, tok
from ..segments import SEGMENT_ORDER
from .summary import TaskSummary, confidence_of, locator_of, model_args, open_run, record_facts, summarise
from .svg import PATTERN_COLOURS, diverging_bars, esc, fmt, histogram, pattern_chart
from .where import highlight

CHUNK = 100
STATUS_RANK = {"attributed": 0, "weak": 1, "skipped": 2, "error": 3}


def shown_status(r: dict) -> str:
    """The status on the page: a weak preference (skipped, relevance kept) is ``weak``."""
    return "weak" if is_weak(r) else r.get("status", "?")


def is_weak(r: dict) -> bool:
    """A skipped record that kept its relevance (Δℓ at most the clean-case threshold): shown, marked weak."""
    return r.get("status") == "skipped" and bool(r.get("weak")) and bool(r.get("input_relevance"))


def _order(recs: list[dict]) -> list[dict]:
    return sorted(recs, key=lambda r: (STATUS_RANK.get(shown_status(r), 4),
                                       -(r.get("delta") or 0.0) if shown_status(r) in ("attributed", "weak") else 0,
                                       r.get("doc_id", 0)))


def where_view(r: dict) -> Markup | None:
    """The model output with the explained token marked (None when the explained token is not in the output)."""
    loc = r.get("locate") or {}
    output, offset = r.get("model_output"), loc.get("output_offset")
    if not output or not isinstance(offset, int) or isinstance(offset, bool):
        return None
    token = (r.get("target") or {}).get("token")
    special = bool(token) and not output.startswith(token, offset) and (
        offset >= len(output.rstrip()) or bool(re.fullmatch(r"<[^<>\s]+>", token)))
    return highlight(output, offset, token, special=special)


def model_label(results: dict | None, fallback: str) -> str:
    """A readable model name: the GGUF file or the last part of ``pretrained`` (never a whole install path)."""
    args = model_args(results)
    return short_name({**args, "pretrained": args.get("pretrained") or (results or {}).get("model_name") or fallback})


class _Index:
    """Interns the values of a column so that each row stores a small integer."""

    def __init__(self):
        self.values: list = []
        self._pos: dict = {}

    def __call__(self, value) -> int:
        if value not in self._pos:
            self._pos[value] = len(self.values)
            self.values.append(value)
        return self._pos[value]


class ReportBuilder:
    def __init__(self, run: Run, top: int | None = None, thresholds: Thresholds | None = None, collapse_min: int = 40,
                 chunk: int = CHUNK):
        self.run, self.top, self.th, self.collapse_min, self.chunk = run, top, thresholds or Thresholds(), collapse_min, chunk
        self.graphs_found = 0
        self.rendered = 0
        self.parts: list[Path] = []
        self.cases_path: Path | None = None
        self.cases_written = 0
        self.facts: dict = {}
        self.summaries: list[TaskSummary] = summarise(run, self.th, self.facts)

    # --- index ------------------------------------------------------------------------------------------------

    def header(self) -> tuple[str, str]:
        res = self.run.results or {}
        args = model_args(res)
        model = model_label(res, self.run.path.name)
        lrp = res.get("lrp") or {}
        bits = [f"run {self.run.path}", f"model {args.get('pretrained') or model}"]
        for key in ("gguf_file", "revision"):
            if args.get(key):
                bits.append(f"{key} {args[key]}")
        if lrp.get("rule"):
            bits.append(f"rule {lrp['rule']}, clean cases Δℓ > {lrp.get('min_delta')}")
        if res.get("lm_eval_version"):
            bits.append(f"lm-eval {res['lm_eval_version']}")
        if len(res.get("merged_from") or []) > 1:
            bits.append(f"{len(res['merged_from'])} results files")
        return f"lm-eval-lrp report — {model}", " · ".join(bits)

    def warnings(self) -> list[str]:
        res = self.run.results
        out = []
        if res is None:
            out.append("No lm-eval results JSON found beside the records: accuracy is not shown.")
        elif (res.get("lrp") or {}).get("error"):
            out.append(f"The attribution step reported an error: {res['lrp']['error']}")
        out += [str(n) for n in ((res or {}).get("lrp") or {}).get("notes", []) or []]
        if not any(t.records for t in self.run.tasks.values()):
            out.append("No attribution records in this run: lm-eval's accuracy is shown"
                       + ("" if (res or {}).get("lrp") else " (run with --lrp to explain the failures)") + ".")
        return out

    def _task_context(self, s: TaskSummary) -> dict:
        segs = [(k, s.segment_shares[k]) for k in SEGMENT_ORDER if k in s.segment_shares]
        segs += [(k, v) for k, v in s.segment_shares.items() if k not in SEGMENT_ORDER]
        return {
            "name": s.name, "slug": _slug(s.name), "metric": s.metric, "accuracy": s.accuracy, "failures": s.failures,
            "attributed": s.attributed, "skipped": s.skipped, "errors": s.errors, "skipped_n": sum(s.skipped.values()),
            "error_count": s.error_count, "clean_case_rate": s.clean_case_rate, "median_delta": s.median_delta,
            "median_ratio": s.median_ratio, "patterns": s.patterns, "locators": s.locators, "top_tokens": s.top_tokens,
            "flips": s.flips, "confidence": s.confidence, "confidence_n": sum(s.confidence.values()),
            "delta_chart": Markup(histogram(s.deltas, "Δℓ of attributed failures", "Δℓ = ℓ(wrong) − ℓ(correct)")),
            "ratio_chart": Markup(histogram(s.ratios, "Conservation ΣR/Δℓ", "ΣR(input)/Δℓ", marker=1.0,
                                            marker_label="1: conservative")),
            "segment_chart": Markup(diverging_bars(segs, "Relevance by segment (mean share of Σ|R|)",
                                                   note="red: towards the wrong token · blue: towards the correct one")),
        }

    def _row(self, r: dict, task: str, view: int | None, ix: dict) -> list:
        """One row of the index's record list; strings repeated across rows (tasks, tokens, reasons) are interned, and
        the record view's address is its number (the page derives ``part_NNNN.html#rN``)."""
        f = self.facts.get(id(r))
        status = shown_status(r)
        note = r.get("reason") or ""
        ratio = (r.get("conservation") or {}).get("ratio") if status == "attributed" else None
        delta = r.get("delta")
        target, contrast = (r.get("target") or {}).get("token"), (r.get("contrast") or {}).get("token")
        return [ix["task"](task), r.get("doc_id"), ix["status"](status), round(delta, 4) if isinstance(delta, (int, float)) else None,
                ix["pattern"](f.pattern.label if f and f.pattern else ""), ix["locator"](locator_of(r)),
                ix["segment"](f.top_segment if f else ""), None if target is None else ix["tok"](target),
                None if contrast is None else ix["tok"](contrast), [ix["tok"](t) for t in (f.top_tokens if f else [])], view,
                round(ratio, 3) if isinstance(ratio, (int, float)) else None, ix["note"](note),
                ix["confidence"](confidence_of(r)), case_line(r, max_candidates=6)]  # the index stays small

    # --- one record -------------------------------------------------------------------------------------------

    def record_view(self, r: dict, rid: str, task_key: str | None = None) -> dict:
        task_key = task_key or r.get("task")
        status = shown_status(r)
        f = self.facts.get(id(r)) or record_facts(self.run, r, self.th, task_key)
        view = {"r": r, "rid": rid, "status": status, "attributed": status == "attributed", "weak": status == "weak",
                "explained": status in ("attributed", "weak"), "where": where_view(r), "locator": locator_of(r),
                "confidence": confidence_of(r), "candidates": candidates_of(r),
                "min_delta": ((self.run.results or {}).get("lrp") or {}).get("min_delta", 1.0),
                "target": r.get("target") or {}, "contrast": r.get("contrast") or {}, "topk": r.get("topk") or [],
                "n_tokens": len(r.get("tokens") or []), "pattern": f.pattern, "prev": None, "next": None,
                "metrics": ", ".join(f"{k}={v:g}" for k, v in (r.get("metrics") or {}).items() if isinstance(v, (int, float)))}
        if not view["explained"]:
            return view
        h = heatmap.render(r, rid, collapse_min=self.collapse_min, special_tokens=self.th.special_tokens)
        tokens, rel = r.get("tokens") or [], r.get("input_relevance") or []
        scale = h.scale or 1.0
        segs = f.segments or (r.get("segments") or {})
        items = [(k, segs[k]) for k in SEGMENT_ORDER if k in segs] + [(k, v) for k, v in segs.items() if k not in SEGMENT_ORDER]
        view.update({
            "heat": h, "heat_html": Markup(h.html), "legend": Markup(heatmap.legend()),
            "special": ", ".join(f"#{i} {tokens[i]!r} (R={rel[i]:+.3g})" for i in h.special if i < len(rel) and rel[i] is not None),
            "jumps_wrong": [{"i": i, "token": tokens[i], "value": rel[i] / scale} for i in h.top_wrong],
            "jumps_correct": [{"i": i, "token": tokens[i], "value": rel[i] / scale} for i in h.top_correct],
            "segment_chart": Markup(diverging_bars(items, "Relevance by prompt segment",
                                                   note="red: towards the wrong token · blue: towards the correct one")),
            "segments_derived": bool(segs) and not r.get("segments"),
            "conservation": r.get("conservation") or {}, "conservation_chart": Markup(self._conservation(r)),
            "faithfulness": faithfulness_line(r.get("faithfulness")),
            "nodes": Markup(self._nodes(r, task_key)), "graph": Markup(self._graph(r, task_key)),
        })
        return view

    def _conservation(self, r: dict) -> str:
        c = r.get("conservation") or {}
        blocks = c.get("blocks") or []
        scale = abs(c.get("delta") or 0.0) or 1.0
        split = any(abs(b.get("mlp_lost") or 0.0) > 1e-3 * scale for b in blocks)
        items = []
        for b in blocks:
            if split:
                items += [(f"block {b.get('layer')} attn", b.get("attn_lost")), (f"block {b.get('layer')} mlp", b.get("mlp_lost"))]
            else:
                items.append((f"block {b.get('layer')}", b.get("lost")))
        return diverging_bars(items[:96], "Relevance lost per block (out − in)",
                              note="" if split else "attention and MLP together (the MLPs conserve)") if items else ""

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
            return '<p class="meta">No graph for this record.</p>'
        if not path.exists():
            return f'<p class="meta">No graph for this record ({esc(path.name)} not found beside the records).</p>'
        try:
            graph = load_graph(path)
        except (ValueError, OSError) as err:
            return f'<p class="warn">{esc(err)}</p>'
        self.graphs_found += 1
        return render_section(graph)

    # --- the files --------------------------------------------------------------------------------------------

    def write(self, out: Path) -> Path:
        """Write the index at ``out`` and the record pages in ``<out stem>_records/``; returns ``out``."""
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        rec_dir = out.parent / f"{out.stem}_records"
        rec_dir.mkdir(exist_ok=True)
        for stale in rec_dir.glob("part_*.html"):
            stale.unlink()
        views: list[tuple[str, dict]] = []
        rows = []
        ix = {k: _Index() for k in ("task", "status", "pattern", "locator", "segment", "note", "tok", "confidence")}
        for s in self.summaries:
            if s.name not in self.run.tasks:
                continue
            seen = 0
            for r in _order(self.run.tasks[s.name].records):
                view = None
                seen += r.get("status") == "attributed"
                if not (r.get("status") == "attributed" and self.top is not None and seen > self.top):
                    view = len(views)
                    views.append((s.name, r))
                rows.append(self._row(r, s.name, view, ix))
        cases = [r for s in self.summaries if s.name in self.run.tasks for r in _order(self.run.tasks[s.name].records)]
        self.cases_path = out.parent / f"{out.stem}_cases.jsonl"
        self.cases_written = write_cases(self.cases_path, cases)
        if not self.cases_written:
            self.cases_path.unlink()
        title, subtitle = self.header()
        n_parts = (len(views) + self.chunk - 1) // self.chunk
        index_href = f"../{out.name}#records"
        for p in range(n_parts):
            chunk = []
            for i in range(p * self.chunk, min((p + 1) * self.chunk, len(views))):
                task_key, r = views[i]
                v = self.record_view(r, f"r{i}", task_key)
                if i > 0:
                    v["prev"] = (f"{_part(i - 1, self.chunk)}" if (i - 1) // self.chunk != p else "") + f"#r{i - 1}"
                if i + 1 < len(views):
                    v["next"] = (f"{_part(i + 1, self.chunk)}" if (i + 1) // self.chunk != p else "") + f"#r{i + 1}"
                chunk.append(v)
            path = rec_dir / _part(p * self.chunk, self.chunk)
            path.write_text(render("records.html", title=title, subtitle=subtitle, views=chunk, index_href=index_href,
                                   first=p * self.chunk, total=len(views)), encoding="utf-8")
            self.parts.append(path)
        self.rendered = len(views)
        dicts = {k: v.values for k, v in ix.items()}
        dicts.update(colours=PATTERN_COLOURS, rep=[tok(t) for t in dicts["tok"]], dir=rec_dir.name, chunk=self.chunk)
        text = render("index.html", title=title, subtitle=subtitle, warnings=self.warnings(),
                      summaries=[self._task_context(s) for s in self.summaries],
                      pattern_chart=Markup(pattern_chart({s.name: s.patterns for s in self.summaries},
                                                         "Failure patterns per task (attributed failures)")),
                      pattern_help=describe_thresholds(self.th), n_rows=len(rows),
                      rows_json=script_json({"dicts": dicts, "rows": rows}), n_parts=n_parts, records_dir=rec_dir.name,
                      cases_file=self.cases_path.name if self.cases_written else None,
                      has_lrp=bool((self.run.results or {}).get("lrp")) or bool(self.run.tasks))
        out.write_text(text, encoding="utf-8")
        return out


def faithfulness_line(f: dict | None) -> str:
    """One line on a record's faithfulness result (deletion-curve areas, tokens masked until the preference flips)."""
    if not f:
        return ""
    bits = []
    area = f.get("area") or {}
    if area:
        bits.append("deletion-curve area (smaller is better): " + ", ".join(f"{k} {fmt(v, '.2f')}" for k, v in area.items()))
    flips = f.get("flip") or {}
    if flips:
        bits.append("tokens masked until the preference flips: " + ", ".join(
            f"{k} {v if v is not None else 'no flip'}" for k, v in flips.items()))
    return " · ".join(bits)


def _part(i: int, chunk: int) -> str:
    return f"part_{i // chunk:04d}.html"


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
                 thresholds: Thresholds | None = None, chunk: int = CHUNK) -> tuple[Path, ReportBuilder, list[TaskSummary]]:
    """Write the report of the run at ``run_dir`` (default ``<run>/report.html`` and ``<run>/report_records/``);
    returns (index path, builder, summaries)."""
    run = open_run(run_dir)
    builder = ReportBuilder(run, top=top, thresholds=thresholds, chunk=chunk)
    out = builder.write(Path(output) if output else run.path / "report.html")
    return out, builder, builder.summaries
