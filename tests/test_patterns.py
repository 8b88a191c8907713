"""Failure patterns (URT / OIT / both / none / n/a): crafted records, and agreement with hand labels of real failures."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from lm_eval_lrp.patterns import (
    BOTH, NA, NONE, OIT, URT, Thresholds, classify, distribution, distribution_by_task, is_special_token,
    special_positions, template_words, token_groups,
)

DATA = Path(__file__).with_name("data")
ARC = {"doc_to_text": "Question: {{question}}\nAnswer:", "description": "", "fewshot_delimiter": "\n\n"}
TOKENS = ["Question", ":", " What", " makes", " rain", " fall", "?", "\n", "Answer", ":"]


def rec(rel, tokens=None, status="attributed", prompt=None, n_prompt=None):
    tokens = tokens or TOKENS
    return {"task": "t", "doc_id": 0, "status": status, "tokens": tokens, "input_relevance": rel,
            "prompt": prompt if prompt is not None else "".join(tokens), "n_prompt_tokens": n_prompt or len(tokens)}


def test_template_words_from_doc_to_text():
    assert template_words(ARC) == {"question", "answer"}
    assert template_words({"doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nAnswer:"}) == {"a", "answer"}
    assert template_words({"doc_to_text": 3}) == set() and template_words(None) == set()
    groups = token_groups(rec([0.0] * len(TOKENS)), ARC)
    assert groups == ["irrelevant", "irrelevant", "relevant", "relevant", "relevant", "relevant", "irrelevant",
                      "irrelevant", "irrelevant", "irrelevant"]


def test_oit_when_format_tokens_push_and_the_key_word_supports_gold():
    #        Question  :    What  makes  rain   fall   ?     \n    Answer  :
    r = rec([0.2,     0.1, 0.0,  0.05,  -0.9,  -0.1,  0.3,  0.2,  0.6,    1.0])
    p = classify(r, task_config=ARC)
    assert p.label == OIT and p.oit_share > 0.9 and p.support == pytest.approx(0.9)


def test_urt_when_content_words_push_the_wrong_way_and_nothing_argues_for_gold():
    r = rec([0.0, 0.0, 0.1, 0.9, 1.0, 0.2, 0.0, 0.05, 0.0, -0.1])
    p = classify(r, task_config=ARC)
    assert p.label == URT and p.support == 0.0 and p.oit_share < 0.1
    assert "no token of the query or answer so far argues for the gold" in p.reason


def test_both_and_none():
    both = rec([0.3, 0.2, 0.0, 0.1, -0.2, 0.0, 0.3, 0.2, 0.6, 1.0])
    assert classify(both, task_config=ARC).label == BOTH
    none = rec([0.0, 0.05, 0.0, 0.9, -1.0, 0.3, 0.0, 0.0, 0.0, 0.1])
    assert classify(none, task_config=ARC).label == NONE


def test_template_words_only_when_the_template_has_them():
    r = rec([0.0, 0.1, 0.0, 0.0, -0.3, 0.0, 0.0, 0.0, 1.0, 0.1])
    assert classify(r, task_config=ARC).label == BOTH  # 'Answer' is format: it carries the push
    assert classify(r, task_config={"doc_to_text": "{{question}}"}).label == URT  # here 'Answer' is text of the query
    assert classify(r, Thresholds(template_words=("Answer",))).label == BOTH


def test_special_tokens_are_irrelevant_and_out_of_the_maxima():
    tokens = ["<|im_start|>"] + TOKENS
    r = rec([9.0, 0.0, 0.0, 0.0, 0.5, -0.4, 0.0, 0.0, 0.0, 0.0, 0.1], tokens)
    assert special_positions(r) == {0}
    p = classify(r, task_config=ARC)
    assert p.support == pytest.approx(0.8)  # 0.4 against the strongest non-special push, 0.5
    assert p.label == OIT  # the attention sink carries most of the push towards the wrong token


def test_few_shot_examples_are_irrelevant():
    prompt = "Question: a?\nAnswer: x\n\nQuestion: b?\nAnswer:"
    tokens = ["Question", ":", " a", "?", "\n", "Answer", ":", " x", "\n\n", "Question", ":", " b", "?", "\n", "Answer", ":"]
    rel = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -0.6, 0.0, 0.0, 0.0, 0.0]
    r = rec(rel, tokens, prompt=prompt)
    assert token_groups(r, ARC, 1)[7] == "irrelevant"
    assert classify(r, task_config=ARC, n_shot=1).label == OIT  # ' x' of the example pushes; ' b' supports gold
    assert classify(r, task_config=ARC, n_shot=0).label == NONE  # as one query, ' x' would be a relevant word


def test_thresholds_are_parameters():
    r = rec([0.0, 0.0, 0.0, 0.0, -0.3, 0.0, 0.0, 0.0, 0.3, 1.0])  # support 0.3, OIT share 1
    assert classify(r, task_config=ARC).label == BOTH
    assert classify(r, Thresholds(urt_max_support=0.2), task_config=ARC).label == OIT
    assert classify(r, Thresholds(urt_max_support=0.2, oit_min_share=1.01), task_config=ARC).label == NONE


def test_not_judged():
    assert classify(rec([0.1] * 10, status="skipped")).label == NA
    assert classify(rec([])).label == NA
    unaligned = rec([0.1] * 10, prompt="something else entirely")
    assert classify(unaligned, task_config=ARC, n_shot=2).label == NA  # few-shot prompt whose tokens cannot be placed
    assert classify(unaligned, task_config={}, n_shot=0).label != NA  # zero-shot: every prompt token is the query


def test_relevance_override_for_another_model():
    r = rec([0.0, 0.0, 0.1, 0.9, 1.0, 0.2, 0.0, 0.05, 0.0, -0.1])
    assert classify(r, task_config=ARC).label == URT
    assert classify(r, relevance=[0.0, 0.0, 0.0, 0.8, -1.0, 0.0, 0.0, 0.0, 0.0, 0.1], task_config=ARC).label == NONE


def test_distribution_counts_attributed_only():
    recs = [rec([0.0, 0.0, 0.1, 0.9, 1.0, 0.2, 0.0, 0.05, 0.0, -0.1]), rec([0.1] * 10, status="error")]
    d = distribution(recs)
    assert sum(d.values()) == 1
    assert distribution_by_task({"x": recs})["x"] == dict(d)


def test_agreement_with_hand_labels_of_real_failures():
    """≥ 30 real SmolLM2 failures labelled by hand (tests/data); the rule must keep agreeing with them."""
    tasks = json.loads((DATA / "pattern_tasks.json").read_text())
    rows = [json.loads(line) for line in (DATA / "pattern_labels.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) >= 30
    got = []
    for row in rows:
        r = row["record"]
        got.append((row["label"], classify(r, task_config=tasks["configs"].get(r["task"]),
                                           n_shot=tasks["n-shot"].get(r["task"])).label))
    agree = sum(a == b for a, b in got) / len(got)
    per_class = Counter(b for _, b in got)
    assert agree >= 0.75, (agree, got)
    assert len([k for k in (URT, OIT, BOTH) if per_class[k]]) >= 2  # the labels discriminate: not one class for all


@pytest.mark.parametrize("tok", ["<|im_start|>", "<|endoftext|>", "<s>", "</s>", "<bos>", "<｜begin▁of▁sentence｜>", " <|im_end|>"])
def test_special_token_strings(tok):
    assert is_special_token(tok)


@pytest.mark.parametrize("tok", ["<script>", "hello", "<", "|>", "<a>", "", " "])
def test_ordinary_token_strings(tok):
    assert not is_special_token(tok)


def test_segments_derived_from_the_prompt_when_the_run_recorded_none():
    from lm_eval_lrp.segments import record_segments as derived_segments, record_spans as token_spans
    from lm_eval_lrp.task_kinds import has_signature_prompt

    prompt = 'def f(x):\n    """Add one."""\n'
    tokens = ["<|endoftext|>", "def", " f", "(x", "):\n", "   ", ' """', "Add", " one", '."""']  # trailing "\n" moved on
    r = {"task": "humaneval", "status": "attributed", "prompt": prompt, "tokens": tokens + [" return"],
         "n_prompt_tokens": len(tokens), "input_relevance": [9.0, 0.1, 0.2, 0.0, 0.0, 0.0, -0.3, -0.4, 0.1, 0.0, 0.5],
         "segments": {}}
    spans = token_spans(r)
    assert spans[0] == (0, 0) and spans[1] == (0, 3) and spans[-1][1] == len(prompt) - 1
    segs = derived_segments(r, code=has_signature_prompt(r["task"]))  # as the report asks (lm_eval_lrp.task_kinds)
    # the token ' """' straddles the signature/docstring boundary: in neither (as in the harness)
    assert segs == pytest.approx({"signature": 0.3, "docstring": -0.3, "answer_so_far": 0.5})
    assert classify(r, segments=segs).label in (URT, NONE, OIT, BOTH)
    fewshot = {"task": "x", "prompt": "Q: a\nA: 1\n\nQ: b\nA:", "tokens": ["Q: a\nA: 1", "\n\n", "Q: b\nA:"],
               "n_prompt_tokens": 3, "input_relevance": [0.5, 0.1, -0.2]}
    assert derived_segments(fewshot, task_config={"fewshot_delimiter": "\n\n"}, n_shot=1) == pytest.approx({"fewshot": 0.6, "query": -0.2})
    assert derived_segments({**fewshot, "tokens": ["Q: a", "zzz", "Q: b\nA:"]}, task_config={}, n_shot=1) == {}  # strings do not match
