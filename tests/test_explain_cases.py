"""``lm-eval-lrp explain RUN_DIR --cases FILE``: stored failures re-explained at hand-given positions, no re-evaluation."""

from __future__ import annotations

import json

import pytest

import tiny_harness as th


def _args(world, out, extra=()):
    return ["--model", "hf", "--model_args", f"pretrained={world['model']}", "--include_path", str(world["tasks"]),
            "--tasks", "tiny_gen", "--device", "cpu", "--output_path", str(out), "--log_samples", "--lrp",
            "--lrp_min_delta", "0", "--lrp_topk", "3", *extra]


def newest(out) -> dict[int, dict]:
    """The records of the newest attributions file of tiny_gen (the one reports read), by doc id."""
    from lm_eval_lrp.artifacts import read_records

    path = sorted(th.model_dir(out).glob("attributions_tiny_gen_*.jsonl"))[-1]
    return {r["doc_id"]: r for r in read_records(path)}


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A stored run without a model (refusals come before any model is loaded)."""
    from test_report import attributed, results_for, write_run

    recs = []
    for doc in range(3):
        r = attributed("tiny_gen", doc, ["<s>", "Q", ":", " 3"], [0.5, 0.1, -0.2, 0.3], output="So 3 x 5 = 16")
        offset = None if doc == 2 else 3
        r.update(locator="trajectory" if offset is not None else "gold", output_offset=offset,
                 confidence="single" if offset is not None else "fallback",
                 locate={"chain": ["trajectory", "gold"], "index": 3, "output_offset": offset, "output_ids": [5, 6, 7],
                         "candidates": [{"index": 3, "offset": 3, "token": "3", "why": "value"}]})
        recs.append(r)
    mc = {"task": "tiny_mc", "doc_id": 0, "status": "skipped", "reason": "weak", "kind": "multiple_choice"}
    summary = {"tiny_gen": {"acc": 0.2, "failures": 3}, "tiny_mc": {"acc": 0.5, "failures": 1}}
    return write_run(tmp_path_factory.mktemp("stored") / "model", {"tiny_gen": recs, "tiny_mc": [mc]}, results_for(summary))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    w = {"root": root, "model": th.build(root), "tasks": th.write_tasks(root)}
    out = root / "auto"
    proc = th.run_cli(_args(w, out), root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w["auto"], w["stderr"] = out, proc.stderr
    recs = th.records(out, "tiny_gen")
    assert len(recs) >= 2 and all("output_ids" in r["locate"] for r in recs)
    # a position other than the automatic one: the second output token (or the first, where that was automatic)
    lines = []
    for r in recs[:3]:
        index = 1 if r["locate"].get("index") != 1 else 0
        lines.append({"task": "tiny_gen", "doc_id": r["doc_id"], "index": index, "contrast": "zebra"})
    w["cases"] = root / "cases.jsonl"
    w["cases"].write_text("".join(json.dumps(x) + "\n" for x in lines))
    w["docs"] = [x["doc_id"] for x in lines]
    return w


@pytest.mark.slow
def test_explain_equals_an_in_run_cases_locator(world):
    from lm_eval_lrp.commands import explain as explain_cmd

    in_run = world["root"] / "in_run"
    proc = th.run_cli(_args(world, in_run, ["--lrp_locate", "cases", "--lrp_cases", str(world["cases"])]), world["root"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = {r["doc_id"]: r for r in th.records(in_run, "tiny_gen") if r["doc_id"] in world["docs"]}
    before = sorted(th.model_dir(world["auto"]).glob("attributions_tiny_gen_*.jsonl"))
    old = th.records(world["auto"], "tiny_gen")
    assert explain_cmd.main([str(world["auto"]), "--cases", str(world["cases"]), "--device", "cpu"]) == 0
    after = sorted(th.model_dir(world["auto"]).glob("attributions_tiny_gen_*.jsonl"))
    assert len(after) == len(before) + 1 and before[0].read_text() == before[0].read_text()
    got = newest(world["auto"])
    assert sorted(got) == sorted(r["doc_id"] for r in old)  # every failure of the task is still there
    for doc in world["docs"]:
        g, w = got[doc], want[doc]
        assert g["locator"] == w["locator"] == "cases" and g["confidence"] == "confirmed"
        assert g["status"] == w["status"] and g["token_ids"] == w["token_ids"] and g["position"] == w["position"]
        assert g["target"]["id"] == w["target"]["id"] and g["contrast"]["id"] == w["contrast"]["id"]
        assert g["delta"] == pytest.approx(w["delta"], abs=1e-5)
        assert g["input_relevance"] == pytest.approx(w["input_relevance"], abs=1e-5)
        auto = next(r for r in old if r["doc_id"] == doc)
        assert g["automatic"]["locator"] == auto["locator"] and g["automatic"]["delta"] == auto["delta"]
        assert g["automatic"]["index"] == auto["locate"]["index"]
    for doc in set(got) - set(world["docs"]):  # failures without a case are copied unchanged
        assert got[doc] == next(r for r in old if r["doc_id"] == doc)
    # correcting again keeps the run's own automatic location, not the previous correction
    assert explain_cmd.main([str(world["auto"]), "--cases", str(world["cases"]), "--device", "cpu"]) == 0
    again = newest(world["auto"])
    for doc in world["docs"]:
        assert again[doc]["automatic"] == got[doc]["automatic"]
        assert again[doc]["input_relevance"] == got[doc]["input_relevance"]


@pytest.mark.parametrize("line, message", [
    ('{"task": "tiny_gen", "doc_id": 99, "index": 1}', "holds no record of tiny_gen doc 99"),
    ('{"task": "other", "doc_id": 0, "index": 1}', "has no records of task 'other'"),
    ('{"task": "tiny_mc", "doc_id": 0, "index": 1}', "is a multiple_choice record"),
    ('{"task": "tiny_gen", "doc_id": 0, "index": 1}\n{"task": "tiny_gen", "doc_id": 1, "offset": -3}',
     "cases.jsonl:2: offset must be a non-negative integer"),
    ('{"task": "tiny_gen", "doc_id": 0, "index": 1}\nnot json', "cases.jsonl:2: not valid JSON"),
])
def test_bad_cases_are_named_before_any_model_is_loaded(stored, tmp_path, capsys, line, message):
    from lm_eval_lrp.commands import explain as explain_cmd

    path = tmp_path / "cases.jsonl"
    path.write_text(line + "\n")
    before = sorted(stored.glob("attributions_*"))
    assert explain_cmd.main([str(stored), "--cases", str(path), "--model_args", "pretrained=/nonexistent"]) == 2
    assert message in " ".join(capsys.readouterr().out.split())
    assert sorted(stored.glob("attributions_*")) == before


def test_report_exports_a_cases_file_that_explain_reads(stored, tmp_path):
    from lm_eval_lrp.artifacts import load_run
    from lm_eval_lrp.locate.cases import load_cases
    from lm_eval_lrp.report import build_report

    out, builder, _ = build_report(stored, tmp_path / "r.html")
    lines = [json.loads(x) for x in (tmp_path / "r_cases.jsonl").read_text().splitlines()]
    recs = {r["doc_id"]: r for r in load_run(stored).tasks["tiny_gen"].records}
    assert builder.cases_written == len(lines) == len(recs)  # generate_until failures only
    for line in lines:
        r = recs[line["doc_id"]]
        assert line["offset"] == r.get("output_offset") and line["confidence"] == r["confidence"]
        assert line["candidates"] == [{"offset": 3, "token": "3", "why": "value"}]
        assert ("target" in line) == (line["offset"] is not None)
    known = tmp_path / "known.jsonl"
    known.write_text("".join(json.dumps(x) + "\n" for x in lines if x["offset"] is not None))
    assert len(load_cases(known)) == sum(x["offset"] is not None for x in lines)
    assert 'id="export-cases"' in out.read_text()


@pytest.mark.slow
def test_a_run_says_how_each_location_was_established(world):
    from collections import Counter

    from lm_eval_lrp.artifacts import read_records

    first = sorted(th.model_dir(world["auto"]).glob("attributions_tiny_gen_*.jsonl"))[0]  # the run's own (explain adds one)
    recs = read_records(first)
    assert all(r["confidence"] in ("confirmed", "single", "fallback", None) for r in recs)
    assert all((r["confidence"] is None) == (r["locate"].get("locator") is None) for r in recs)
    c = th.results_json(world["auto"])["lrp"]["tasks"]["tiny_gen"]["locate"]["confidence"]
    counts = Counter(r["confidence"] or "none" for r in recs)
    assert {k: c[k] for k in ("confirmed", "single", "fallback", "none")} == {
        k: counts.get(k, 0) for k in ("confirmed", "single", "fallback", "none")}
    assert sum(c["share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert "tiny_gen locations:" in " ".join(world["stderr"].split())
    # an output that ran to the task's max_gen_toks (6) before its stop sequence says so, and the summary counts them
    cut = [r for r in recs if len(r["locate"]["output_ids"]) >= 6]
    assert all(r["locate"].get("reached_max_gen_toks") == 6 for r in cut)
    assert not any(r["locate"].get("reached_max_gen_toks") for r in recs if r not in cut)
    block = th.results_json(world["auto"])["lrp"]
    assert block["tasks"]["tiny_gen"]["locate"].get("reached_max_gen_toks", 0) == len(cut)
    if cut:
        assert any("stopped at max_gen_toks (6 tokens)" in note for note in block["notes"])
        assert "failures stopped at max_gen_toks" in " ".join(world["stderr"].split())
