"""A report of 10,000 records: the index stays small, opens fast in a real browser, and record views open from it."""

from __future__ import annotations

import html
import json
import random
import time
from pathlib import Path

import pytest

from lm_eval_lrp.artifacts import AttributionWriter
from lm_eval_lrp.report import build_report

from test_report import STAMP, _png_pixels, _screenshot_module

WORDS = [" the", " capital", " of", " France", " is", " not", " a", " river", " which", " planet", " largest", " water",
         " energy", " cell", " plant", " sun", " moon", " animal", " rock", " heat"]


def synthetic_run(run_dir: Path, n: int = 10_000, tasks=("mmlu_a", "mmlu_b", "arc_easy"), seed: int = 0) -> Path:
    """``n`` records over ``tasks``: 70 % attributed (40-80 tokens each), the rest skipped or errors."""
    rng = random.Random(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    per_task = {t: [] for t in tasks}
    for i in range(n):
        task = tasks[i % len(tasks)]
        doc = i // len(tasks)
        u = rng.random()
        base = {"task": task, "doc_id": doc, "doc_hash": f"{i:064x}", "filter": "none", "kind": "loglikelihood",
                "metric": "acc", "metrics": {"acc": 0.0}, "model_output": " B", "gold": " A"}
        if u < 0.2:
            per_task[task].append({**base, "status": "skipped", "reason": "weak preference (delta <= 1)", "delta": rng.random()})
            continue
        if u < 0.22:
            per_task[task].append({**base, "status": "error", "reason": "out of memory", "advice": "use lrp_max_length"})
            continue
        m = rng.randint(40, 80)
        toks = ["<|im_start|>", "Question", ":"] + [rng.choice(WORDS) for _ in range(m)] + ["\n", "Answer", ":"]
        rel = [round(rng.gauss(0, 0.2), 4) for _ in toks]
        rel[0] = 3.0
        delta = round(1 + rng.expovariate(0.5), 3)
        n_q = len(toks) - 1
        per_task[task].append({
            **base, "status": "attributed", "rule": "attnlrp", "prompt": "".join(toks[1:]), "tokens": toks,
            "token_ids": list(range(len(toks))), "n_prompt_tokens": n_q, "truncated_tokens": 0, "position": len(toks) - 1,
            "target": {"id": 1, "token": " B", "logit": 3.0}, "contrast": {"id": 2, "token": " A", "logit": 3.0 - delta},
            "delta": delta, "topk": [{"id": 1, "token": " B", "logit": 3.0}],
            "input_relevance": rel, "segments": {"query": sum(rel[1:n_q]), "answer_so_far": rel[-1]},
            "conservation": {"sum_input": sum(rel), "delta": delta, "ratio": round(sum(rel) / delta, 3), "head_lost": 0.0,
                             "blocks": [{"layer": b, "attn_lost": 0.1, "mlp_lost": 0.0, "lost": 0.1} for b in range(4)]},
        })
    for task, recs in per_task.items():
        with AttributionWriter(run_dir / f"attributions_{task}_{STAMP}.jsonl") as w:
            for r in recs:
                w.write(r)
    results = {"results": {t: {"alias": t, "acc,none": 0.5} for t in tasks},
               "config": {"model": "hf-lrp", "model_args": {"pretrained": "/models/big"}},
               "lrp": {"rule": "attnlrp", "min_delta": 1.0, "tasks": {}}}
    (run_dir / f"results_{STAMP}.json").write_text(json.dumps(results))
    return run_dir


@pytest.fixture(scope="module")
def big_report(tmp_path_factory):
    run = synthetic_run(tmp_path_factory.mktemp("big") / "run")
    t0 = time.perf_counter()
    out, builder, summaries = build_report(run)
    return out, builder, summaries, time.perf_counter() - t0


def test_index_stays_small_with_10000_records(big_report):
    out, builder, summaries, seconds = big_report
    size = out.stat().st_size
    assert size < 5 * 2**20, size
    assert sum(s.failures for s in summaries) == 10_000
    assert builder.rendered == 10_000 and len(builder.parts) == 100
    html = out.read_text()
    assert '<tbody id="rows-body"></tbody>' in html  # rows are drawn by the page from compact data, not written out
    data = json.loads(html.split('<script type="application/json" id="rows">', 1)[1].split("</script>", 1)[0])
    assert len(data["rows"]) == 10_000
    view, d = data["rows"][0][10], data["dicts"]  # the row's record view: its number; the page derives the address
    page, rid = f"{d['dir']}/part_{view // d['chunk']:04d}.html", f"r{view}"
    assert f'id="{rid}"' in (out.parent / page).read_text()
    assert d["tok"][data["rows"][0][7]] == " B" and all(isinstance(i, int) for i in data["rows"][0][9])  # tokens interned
    print(f"10,000 records: index {size / 2**20:.2f} MiB, built in {seconds:.1f} s")


def test_index_and_a_record_view_in_chromium(big_report, tmp_path):
    shot = _screenshot_module()
    if shot.find_chromium() is None:
        pytest.skip(reason="Chromium is not installed (apt-get install -y chromium)")
    out = big_report[0]
    t0 = time.perf_counter()
    dom = shot.dump_dom(out)
    seconds = time.perf_counter() - t0
    body = dom.split('id="rows-body">', 1)[1].split("</tbody>", 1)[0]
    assert "10000 of 10000 records" in dom and body.count("<tr") == 100  # the script drew the first page of rows
    first = dom.split('class="open" href="', 1)[1].split('"', 1)[0]
    page, rid = first.replace("&amp;", "&").split("#")
    record = shot.dump_dom(out.parent / page, fragment=rid)
    assert f'id="{rid}"' in record and "Input relevance" in record
    filtered = shot.dump_dom(out, query="status=skipped&task=mmlu_b&sort=delta&desc=1")
    rows = filtered.split('id="rows-body">', 1)[1].split("</tbody>", 1)[0].split("<tr")[1:]
    assert rows and all("badge skipped" in r and ">mmlu_b<" in r for r in rows)
    shown = [float(r.split("class=\"num\">", 1)[1].split("<", 1)[0]) for r in rows]
    assert shown == sorted(shown, reverse=True)  # sorted by Δℓ, largest first
    by_token = shot.dump_dom(out, query="token=energy&sort=tokens")
    rows = by_token.split('id="rows-body">', 1)[1].split("</tbody>", 1)[0].split("<tr")[1:]
    cells = [html.unescape(r.split('class="mono">', 1)[1].split("<", 1)[0]) for r in rows]
    assert len(cells) == 100 and all("' energy'" in c for c in cells) and cells == sorted(cells)  # interned tokens, as text
    png = shot.screenshot(out.parent / page, tmp_path / "rec.png", fragment=rid)
    assert _png_pixels(png)[0] == 1400
    t1 = time.perf_counter()
    shot.screenshot(out, tmp_path / "index.png", budget_ms=0)
    first_screenshot = time.perf_counter() - t1
    print(f"index DOM in {seconds:.2f} s, first screenshot {first_screenshot:.2f} s")
    assert first_screenshot < 6.0  # includes Chromium's own start; the 2 s budget is measured in RESULTS.md
