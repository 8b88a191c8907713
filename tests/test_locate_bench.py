"""The locate benchmark's dev set (hand-annotated real failures) and its scoring: the share of failures whose
explained token lies inside the annotated span."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_model
from locate_helpers import CharTokenizer

from lm_eval_lrp.locate import Chain, Context, make
from lm_eval_lrp.locate.decoding import greedy_fresh

ROOT = Path(__file__).resolve().parents[1]
DEVSET = ROOT / "tests" / "data" / "locate_devset.jsonl"
TOK = CharTokenizer()


def _bench():
    spec = importlib.util.spec_from_file_location("bench_locate", ROOT / "benchmarks" / "locate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _bench()


def row(output, span, prompt="Q: sum?\nA:", gold=None, doc=None, doc_id=0, task="gsm8k"):
    return {"task": task, "doc_id": doc_id, "model": "tiny", "chat_template": False, "prompt_ids": TOK.encode(prompt),
            "output_ids": TOK.encode(output), "output": output, "gold": gold, "doc": doc or {}, "span": list(span),
            "note": ""}


def write(tmp_path, rows) -> Path:
    path = tmp_path / "devset.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.skipif(not DEVSET.exists(), reason="the dev set (tests/data/locate_devset.jsonl) is not in this tree yet")
def test_devset_is_well_formed_and_verifiers_read_it():
    rows = bench.load_devset(DEVSET)
    assert rows, "the dev set is empty"
    ctx = Context(decode=lambda ids: "")  # text-only: offsets are not needed to list the verifier's hits
    from lm_eval_lrp.locate.arithmetic import arithmetic_errors
    from lm_eval_lrp.locate.verifier import Verifier

    with_errors = 0
    for r in rows:
        gen = bench.generation_of(r)
        assert gen.output == r["output"]
        hits = Verifier().hits(gen, ctx)
        assert all(0 <= h.offset <= len(gen.output) and h.reason and h.check for h in hits)
        errors = arithmetic_errors(gen.output)
        assert {e.offset for e in errors} <= {h.offset for h in hits}  # every wrong equation is a hit
        for e in errors:  # and each is a real, readable error: written where it says, with another value
            assert gen.output[e.offset] in e.written  # the offset points at the wrong side as written
            assert e.correct != e.written.strip()
            assert " ".join(e.equation.split()) in " ".join(gen.output.split())
        with_errors += bool(errors)
    assert with_errors > 0  # the dev set's math failures include arithmetic slips the verifier must find


def test_share_in_span_for_a_text_locator(tmp_path):
    out1 = "3*3*60 = <<3*3*60=180>>180"
    out2 = "2 + 2 = 5 so 10"
    rows = bench.load_devset(write(tmp_path, [
        row(out1, (out1.index("180"), out1.index("180") + 3)),  # the verifier points here: a hit
        row(out2, (0, 1), doc_id=1),  # annotated elsewhere: a miss
        row("no arithmetic here", (0, 2), doc_id=2),  # nothing located: a miss
    ]))
    report = bench.evaluate(rows, {"verifier": lambda r: Chain([make("verifier")])},
                            lambda: Context.from_tokenizer(TOK))
    r = report["verifier"]
    assert (r["failures"], r["hit_share"], r["located_share"], r["errors"]) == (3, round(1 / 3, 3), round(2 / 3, 3), 0)
    assert [c["hit"] for c in r["cases"]] == [True, False, False]
    assert r["cases"][1]["offset"] == out2.index("5") and r["by_locator"] == {"verifier": 2, "none": 1}
    # outputs that ran to their max_gen_toks are counted apart, with their hits
    cut = bench.load_devset(write(tmp_path, [{**row(out1, (out1.index("180"), out1.index("180") + 3)),
                                              "max_gen_toks": len(TOK.encode(out1))}, row(out2, (0, 1), doc_id=1)]))
    r = bench.evaluate(cut, {"verifier": lambda r: Chain([make("verifier")])}, lambda: Context.from_tokenizer(TOK))["verifier"]
    assert [c["reached_max_gen_toks"] for c in r["cases"]] == [True, False]
    assert (r["reached_max_gen_toks"], r["hits_reached_max_gen_toks"]) == (1, 1)


def test_gold_share_reads_the_divergence_in_the_output(tmp_path):
    torch.manual_seed(0)
    model = tiny_model("llama")
    prompt = "Q: sum?\nA:"
    greedy = greedy_fresh(model, TOK.encode(prompt), 8)
    assert all(t >= 3 for t in greedy)
    output = TOK.decode(greedy)
    gold = output[:4] + ("x" if output[4] != "x" else "y") + output[5:]
    rows = bench.load_devset(write(tmp_path, [row(output, (4, 6), prompt, gold), row(output, (6, 8), prompt, gold, doc_id=1)]))
    report = bench.evaluate(rows, {"gold": lambda r: Chain([make("gold")])}, lambda: Context.from_tokenizer(TOK, model))
    assert [c["offset"] for c in report["gold"]["cases"]] == [4, 4]
    assert report["gold"]["hit_share"] == 0.5


def test_rows_without_a_span_are_left_out(tmp_path):
    good = row("abc def", (0, 3))
    skipped = []
    rows = bench.load_devset(write(tmp_path, [good, {**good, "doc_id": 1, "span": None}]), skipped)
    assert [r["doc_id"] for r in rows] == [0] and skipped == [f"{tmp_path / 'devset.jsonl'}:2"]


@pytest.mark.parametrize("bad,message", [
    ({"span": [5, 2]}, "span"),
    ({"span": [0, 999]}, "span"),
    ({"prompt_ids": []}, "prompt_ids"),
    ({"doc_id": "3"}, "'doc_id' must be a int"),
    ({"span": [1]}, "span"),
])
def test_malformed_devset_line_is_named(tmp_path, bad, message):
    good = row("abc def", (0, 3))
    path = write(tmp_path, [good, {**good, **bad}])
    with pytest.raises(ValueError, match=message) as err:
        bench.load_devset(path)
    assert f"{path}:2:" in str(err.value)


def test_a_token_with_the_space_before_an_annotated_word_is_inside_it():
    """``' Sum'`` explained where a person annotated ``Sum up ...`` (the span starts after the space) is a hit; a
    token of white space only keeps its own start (a newline before the span is not inside it)."""
    from lm_eval_lrp.locate import Generation, Location

    pieces = {1: "Q", 5: " Sum", 6: " up", 7: "\n", 8: "x"}
    ctx = Context(decode=lambda ids: "".join(pieces[i] for i in ids))
    gen = Generation([1], [8, 7, 5, 6], "x\n Sum up")
    at = {i: Location(i, gen.output_ids[i], None, "t", "", output_offset=ctx.offsets(gen.output_ids)[i]) for i in (1, 2)}
    assert bench.explained_offset(at[2], gen, ctx) == gen.output.index("Sum")
    assert bench.explained_offset(at[1], gen, ctx) == gen.output.index("\n")
