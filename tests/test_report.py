"""``lm-eval-lrp report``: a static, self-contained HTML report of a run (fixture runs written with AttributionWriter)."""

from __future__ import annotations

import importlib.util
import json
import re
import struct
import zlib
from pathlib import Path

import pytest
import torch

from lm_eval_lrp.artifacts import AttributionWriter
from lm_eval_lrp.commands import report as report_cmd
from lm_eval_lrp.report import build_report, load_graph, normalise, strongest_paths
from lm_eval_lrp.report.graph_view import describe_path
from lm_eval_lrp.report.heatmap import render

EVIL = "<script>alert(1)</script>"
STAMP = "2026-01-02T03-04-05.678901"
ROOT = Path(__file__).resolve().parents[1]


def attributed(task, doc_id, tokens, rel, *, prompt=None, segments=None, delta=2.5, output=" 7", gold=" 3"):
    n = len(tokens)
    return {
        "task": task, "doc_id": doc_id, "doc_hash": f"{doc_id:064x}", "filter": "none", "kind": "generate_until",
        "metric": "exact_match", "metrics": {"exact_match": 0.0}, "prompt": prompt if prompt is not None else "".join(tokens),
        "model_output": output, "gold": gold, "status": "attributed", "rule": "attnlrp", "tokens": tokens,
        "token_ids": list(range(10, 10 + n)), "n_prompt_tokens": n - 1, "truncated_tokens": 0, "position": n - 1,
        "target": {"id": 1, "token": " 7", "logit": 3.0}, "contrast": {"id": 2, "token": " 3", "logit": 0.5},
        "delta": delta, "topk": [{"id": 1, "token": " 7", "logit": 3.0}, {"id": 2, "token": " 3", "logit": 0.5}],
        "input_relevance": rel, "segments": segments if segments is not None else {"query": sum(rel[:-1]), "answer_so_far": rel[-1]},
        "conservation": {"sum_input": sum(rel), "delta": delta, "ratio": sum(rel) / delta, "head_lost": 0.0,
                         "blocks": [{"layer": 0, "attn_lost": 0.1, "mlp_lost": -0.02, "lost": 0.08}]},
        "seconds": 0.01,
    }


def make_graph(task, doc_id, tokens, n_blocks=2):
    """A small graph in the engine's format: two token positions per layer, links between consecutive layers."""
    layers = ["embed"] + [f"{b}.{k}" for b in range(n_blocks) for k in ("mid", "out")]
    last = len(tokens) - 1
    nodes, links = [], []
    for li, layer in enumerate(layers):
        for tok in ({1, last} if li < len(layers) - 1 else {last}):
            nodes.append({"id": f"{layer}@{tok}", "layer": layer, "layer_index": li, "token": tok, "relevance": 0.5 + tok * 0.1})
    for li in range(1, len(layers)):
        for n in [n for n in nodes if n["layer_index"] == li]:
            for m in [m for m in nodes if m["layer_index"] == li - 1]:
                w = 1.5 if m["token"] == n["token"] else -0.4
                links.append({"source": m["id"], "target": n["id"], "weight": w})
    return {"format": "lm-eval-lrp-graph/1",
            "meta": {"record": {"task": task, "doc_id": doc_id}, "rule": "attnlrp", "delta": 2.5, "node_threshold": 0.01,
                     "prune": {"mode": "mass", "value": 0.85}, "final_node": f"{layers[-1]}@{last}"},
            "layers": layers, "tokens": tokens, "nodes": nodes, "links": links,
            "transitions": [{"source_layer": a, "target_layer": b, "threshold": 0.1, "kept": 3, "total": 4, "mass_total": 2.0,
                             "mass_kept": 1.8} for a, b in zip(layers, layers[1:])]}


def report_text(index: Path) -> str:
    """The index and every record page of a report, as one string."""
    parts = sorted((index.parent / f"{index.stem}_records").glob("part_*.html"))
    return "".join(p.read_text(encoding="utf-8") for p in [index, *parts])


def write_run(run_dir: Path, by_task: dict[str, list[dict]], results: dict | None = None, nodes: bool = False) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    for task, recs in by_task.items():
        with AttributionWriter(run_dir / f"attributions_{task}_{STAMP}.jsonl") as w:
            for r in recs:
                if nodes and r.get("status") == "attributed":
                    n = len(r["tokens"])
                    w.write(r, torch.linspace(-1, 1, 5 * n).reshape(5, n), ["embed", "0.mid", "0.out", "1.mid", "1.out"])
                else:
                    w.write(r)
    if results is not None:
        (run_dir / f"results_{STAMP}.json").write_text(json.dumps(results), encoding="utf-8")
    return run_dir


def results_for(tasks: dict[str, dict]) -> dict:
    return {"results": {t: {"alias": t, "exact_match,none": v["acc"], "exact_match_stderr,none": 0.1} for t, v in tasks.items()},
            "config": {"model": "hf-lrp", "model_args": {"pretrained": "/models/tiny"}},
            "lrp": {"rule": "attnlrp", "min_delta": 1.0, "notes": [], "tasks": {t: {"metric": "exact_match", **v} for t, v in tasks.items()}}}


@pytest.fixture()
def mixed_run(tmp_path):
    toks = ["<|im_start|>", "Question", ":", " What", " is", " 1", " plus", " 2", "?", "\n", "Answer", ":"]
    rel = [4.0, 0.01, -0.02, 0.05, 0.3, -0.5, 0.1, 0.8, 0.0, 0.02, 0.1, 0.6]
    recs = [
        attributed("tiny_gen", 0, toks, rel),
        attributed("tiny_gen", 1, toks, [r * 0.5 for r in rel], delta=1.5),
        {"task": "tiny_gen", "doc_id": 2, "status": "skipped", "reason": "weak preference (delta <= 1)", "kind": "generate_until",
         "prompt": "Q", "model_output": "x", "gold": "y", "delta": 0.3},
        {"task": "tiny_gen", "doc_id": 3, "status": "error", "reason": "out of memory", "advice": "use lrp_max_length",
         "kind": "generate_until"},
    ]
    summary = {"tiny_gen": {"accuracy": 0.2, "acc": 0.2, "failures": 4, "attributed": 2, "skipped": {"weak preference (delta <= 1)": 1},
                            "errors": {"out of memory": 1}, "clean_case_rate": 0.5, "median_delta": 2.0,
                            "median_conservation_ratio": 0.9, "top_wrong_tokens": [[" 2", 2]]}}
    run = write_run(tmp_path / "run" / "model", {"tiny_gen": recs}, results_for(summary), nodes=True)
    (run / "graph_tiny_gen_0.json").write_text(json.dumps(make_graph("tiny_gen", 0, toks)), encoding="utf-8")
    return run


def test_report_renders_records_skips_errors_graphs(mixed_run, capsys):
    rc = report_cmd.main([str(mixed_run.parent), "--output", str(mixed_run / "r.html")])
    assert rc == 0
    html = report_text(mixed_run / "r.html")
    term = capsys.readouterr().out
    assert "tiny_gen" in term and "report:" in term and "1 attribution graphs" in term
    assert "0.2000" in html and "weak preference (delta &lt;= 1)" in html and "out of memory" in html
    assert html.count('<section class="rec"') == 4  # two attributed, one skipped, one error
    assert 'class="graph"' in html and "Strongest paths" in html  # doc 0 has a graph
    assert "graph_tiny_gen_1.json not found" in html  # doc 1 has none
    assert "use lrp_max_length" in html
    assert 'canvas class="nodes"' in html  # node relevance from the sidecar
    assert "Failure patterns per task" in html


def test_report_default_output_and_top(mixed_run):
    out, builder, summaries = build_report(mixed_run, top=1)
    assert out == mixed_run / "report.html" and out.exists()
    assert builder.rendered == 3  # one attributed (the strongest) + skipped + error
    assert (out.parent / "report_records" / "part_0000.html").exists()
    assert summaries[0].attributed == 2


def test_report_missing_run_is_a_clear_error(tmp_path, capsys):
    assert report_cmd.main([str(tmp_path / "nothing")]) == 2
    (tmp_path / "empty").mkdir()
    assert report_cmd.main([str(tmp_path / "empty")]) == 2
    assert "no lm-eval results" in capsys.readouterr().err


def test_report_without_results_json(tmp_path):
    toks = ["a", "b", "c"]
    run = write_run(tmp_path / "run", {"t": [attributed("t", 0, toks, [0.1, -0.2, 0.3])]})
    out, _, _ = build_report(run)
    assert "No lm-eval results JSON" in report_text(out)


def test_escaping_everywhere(tmp_path):
    toks = ["<|endoftext|>", EVIL, " x", '"><img src=x onerror=alert(2)>', "&amp;"]
    r = attributed(EVIL, 0, toks, [1.0, 0.5, -0.2, 0.3, 0.1], prompt=EVIL + " prompt", output=EVIL, gold=EVIL,
                   segments={EVIL: 0.5, "query": 0.4})
    r["target"]["token"] = EVIL
    r["topk"][0]["token"] = EVIL
    r["reason"] = EVIL
    skipped = {"task": EVIL, "doc_id": 1, "status": "skipped", "reason": EVIL}
    summary = {EVIL: {"accuracy": 0.0, "acc": 0.0, "failures": 2, "attributed": 1, "skipped": {EVIL: 1}, "errors": {},
                      "clean_case_rate": 0.5, "median_delta": 2.5, "top_wrong_tokens": [[EVIL, 1]]}}
    run = write_run(tmp_path / "run", {"evil": [r, skipped]}, results_for(summary), nodes=True)
    graph = make_graph("evil", 0, toks)
    (run / "graph_evil_0.json").write_text(json.dumps(graph))
    out, _, _ = build_report(run)
    html = report_text(out)
    assert html.count("<script>") == 3  # the report's own scripts (index: 2, one record page: 1), nothing from data  # the report's own script, nothing from data
    assert "alert(1)</script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'class="graph"' in html


def test_normalisation_excludes_special_tokens():
    norm, scale = normalise([10.0, 0.5, -0.25, 0.0], {0})
    assert norm == [None, 1.0, -0.5, 0.0] and scale == 0.5
    r = attributed("t", 0, ["<|im_start|>", "a", "b", "c"], [10.0, 0.5, -0.25, 0.0])
    h = render(r, "r0")
    spans = re.findall(r"<span([^>]*)>([^<]*)</span>", h.html)
    assert 'class="sp"' in spans[0][0] and "excluded from normalisation" in spans[0][0]
    assert 'class="p10"' in spans[1][0] and 'class="n5"' in spans[2][0]
    assert h.special == [0] and h.top_wrong == [1] and h.top_correct == [2]


def test_bos_index_zero_not_special_when_it_is_text():
    r = attributed("t", 0, ["Question", "a"], [2.0, 1.0])
    norm, _ = normalise(r["input_relevance"], set())
    assert norm == [1.0, 0.5]
    assert render(r, "r0").special == []


def test_long_prompt_collapses_and_stays_small(tmp_path):
    n = 5000
    toks = [f" w{i}" for i in range(n)]
    rel = [0.001 * ((i % 7) - 3) for i in range(n)]
    for i, v in ((17, 2.0), (2500, -1.5), (4990, 1.0)):
        rel[i] = v
    r = attributed("long", 0, toks, rel)
    h = render(r, "r0")
    assert h.gaps >= 2 and h.collapsed > 4500
    assert 'id="r0-t17"' in h.html and 'id="r0-t2500"' in h.html  # jump targets stay visible
    assert all(t in h.html for t in (" w0", " w1234", " w4999"))  # folded tokens remain searchable
    run = write_run(tmp_path / "run", {"long": [r]}, results_for({"long": {"accuracy": 0.0, "acc": 0.0, "failures": 1}}))
    out, _, _ = build_report(run)
    size = sum(p.stat().st_size for p in [out, *(out.parent / "report_records").glob("*.html")])
    assert size < 400_000, size
    assert 'data-target="r0-t17"' in report_text(out)


def test_self_contained(mixed_run):
    out, _, _ = build_report(mixed_run)
    html = report_text(out)
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert "default-src 'none'" in html  # the page cannot fetch anything, even by mistake


def test_graph_paths_and_validation(tmp_path):
    g = {"format": "lm-eval-lrp-graph/1", "meta": {"final_node": "0.out@2"}, "layers": ["embed", "0.mid", "0.out"],
         "tokens": ["a", "b", "c"],
         "nodes": [{"id": "embed@0", "layer": "embed", "layer_index": 0, "token": 0, "relevance": 1.0},
                   {"id": "embed@2", "layer": "embed", "layer_index": 0, "token": 2, "relevance": 1.0},
                   {"id": "0.mid@2", "layer": "0.mid", "layer_index": 1, "token": 2, "relevance": 2.0},
                   {"id": "0.out@2", "layer": "0.out", "layer_index": 2, "token": 2, "relevance": 2.0}],
         "links": [{"source": "embed@0", "target": "0.mid@2", "weight": -1.0},
                   {"source": "embed@2", "target": "0.mid@2", "weight": 3.0},
                   {"source": "0.mid@2", "target": "0.out@2", "weight": 2.0}]}
    paths = strongest_paths(g, k=5)
    assert [p["nodes"] for p in paths] == [["embed@2", "0.mid@2", "0.out@2"], ["embed@0", "0.mid@2", "0.out@2"]]
    assert paths[0]["strength"] == pytest.approx(0.75) and paths[1]["strength"] == pytest.approx(0.25)
    assert paths[0]["sign"] == 1 and paths[1]["sign"] == -1
    assert describe_path(paths[1], g) == "'a'@0 [embed] → 'c'@2 [0.mid→0.out]"
    bad = tmp_path / "g.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="lm-eval-lrp-graph/1"):
        load_graph(bad)


def _png_pixels(path: Path):
    """(width, height, rows of RGB(A) tuples) of an 8-bit RGB/RGBA PNG — enough to look at a screenshot."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and colour in (2, 6)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw, stride, prev, rows, i = zlib.decompress(idat), width * bpp, bytearray(width * bpp), [], 0
    for _ in range(height):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def _screenshot_module():
    spec = importlib.util.spec_from_file_location("screenshot_report", ROOT / "scripts" / "screenshot_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_screenshot_in_a_real_browser(mixed_run, tmp_path):
    shot = _screenshot_module()
    if shot.find_chromium() is None:
        pytest.skip(reason="Chromium is not installed (apt-get install -y chromium): the report is not checked in a browser")
    out, _, _ = build_report(mixed_run)
    index = shot.screenshot(out, tmp_path / "index.png")
    record = shot.screenshot(out.parent / "report_records" / "part_0000.html", tmp_path / "r0.png", fragment="r0",
                             size=(1400, 1400))
    w, h, _, _ = _png_pixels(index)
    assert (w, h) == (1400, 1000)
    w, h, rows, bpp = _png_pixels(record)
    strong_red = strong_blue = 0
    for row in rows[::2]:
        for x in range(0, w * bpp, bpp * 2):
            r, g, b = row[x], row[x + 1], row[x + 2]
            strong_red += r > 150 and g < 90 and b < 90
            strong_blue += b > 150 and r < 60 and g < 130
    assert strong_red > 50 and strong_blue > 50, (strong_red, strong_blue)  # heatmap, bars and graph are drawn


def test_cli_dispatch(mixed_run):
    from lm_eval_lrp.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["report", str(mixed_run), "--output", str(mixed_run / "via_cli.html"), "--top", "5"])
    assert exit_.value.code == 0 and (mixed_run / "via_cli.html").exists()


def test_old_and_minimal_records_still_render(tmp_path):
    """Records written by earlier versions (no segments, conservation, kind, target) and unknown fields render."""
    old = {"task": "t", "doc_id": 0, "status": "attributed", "tokens": ["a", " b", " c"], "input_relevance": [0.2, -0.1, 0.5],
           "delta": 1.5, "some_future_field": {"x": 1}}
    bare_skip = {"task": "t", "doc_id": 1, "status": "skipped"}
    run = write_run(tmp_path / "run", {"t": [old, bare_skip]})
    out, builder, summaries = build_report(run)
    html = report_text(out)
    assert builder.rendered == 2 and summaries[0].attributed == 1
    assert "Input relevance" in html and "skipped" in html


#: a run written by lm-eval-lrp before the issue-22 redesign (commit 90a5a3e: tiny random Llama, tiny_mc and tiny_gen,
#: --lrp_min_delta 0 --lrp_rollouts 2 --lrp_rollout_tokens 4; one node file per record, as runs were then written)
RUN_BEFORE = Path(__file__).resolve().parent / "data" / "run_before_issue22" / "tiny_llama"


def test_a_run_stored_before_the_redesign_still_renders(tmp_path):
    """That commit's own `lm-eval-lrp report` printed these numbers and wrote the same pages, byte for byte."""
    from lm_eval_lrp import load_run

    run = load_run(RUN_BEFORE)
    assert sorted(run.tasks) == ["tiny_gen", "tiny_mc"]
    for task in run.tasks.values():
        for record in task.records:
            names, nodes = task.node_relevance(record)  # the old per-record node files are still read
            assert nodes.shape == (len(names), len(record["tokens"]))
    out, builder, summaries = build_report(RUN_BEFORE, output=tmp_path / "report.html")
    by_task = {s.name: s for s in summaries}
    assert builder.rendered == 10
    assert [(t, by_task[t].failures, by_task[t].attributed, by_task[t].metric) for t in ("tiny_mc", "tiny_gen")] == [
        ("tiny_mc", 5, 5, "acc"), ("tiny_gen", 5, 5, "exact_match")]
    assert by_task["tiny_mc"].accuracy == pytest.approx(0.375)
    assert by_task["tiny_mc"].median_delta == pytest.approx(0.224, abs=5e-4)
    assert by_task["tiny_gen"].median_delta == pytest.approx(0.979, abs=5e-4)
    assert by_task["tiny_gen"].confidence.get("fallback") == 5
    assert [{k: n for k, n in by_task[t].patterns.items() if n} for t in ("tiny_mc", "tiny_gen")] == [{"URT+OIT": 5}] * 2
    html = report_text(out)
    assert "tiny_mc" in html and "tiny_gen" in html and "Input relevance" in html
    assert len((tmp_path / "report_cases.jsonl").read_text().splitlines()) == 5
