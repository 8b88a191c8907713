"""Failure patterns (URT / OIT / both / none / n/a) on crafted records."""

from __future__ import annotations

import pytest

from lm_eval_lrp.patterns import (
    BOTH, NA, NONE, OIT, URT, Thresholds, classify, distribution, distribution_by_task, is_special_token,
    special_positions,
)


def rec(rel, segments, tokens=None, status="attributed"):
    tokens = tokens or [f"t{i}" for i in range(len(rel))]
    return {"task": "t", "doc_id": 0, "status": status, "tokens": tokens, "input_relevance": rel, "segments": segments}


# 8 tokens: 0-3 few-shot, 4-6 query, 7 answer so far
def test_urt_when_the_query_pushes_towards_the_wrong_token():
    r = rec([0.1, -0.1, 0.0, 0.05, 0.4, 0.3, -0.1, 0.2], {"fewshot": 0.05, "query": 0.6, "answer_so_far": 0.2})
    p = classify(r)
    assert p.label == URT and p.urt and not p.oit
    assert p.support < 0 and "wrong token" in p.reason


def test_oit_when_few_shot_carries_the_push_but_the_query_supports_gold():
    r = rec([0.5, 0.4, 0.0, 0.1, -0.6, -0.3, -0.1, 0.0], {"fewshot": 1.0, "query": -1.0, "answer_so_far": 0.0})
    p = classify(r)
    assert p.label == OIT
    assert p.oit_share == pytest.approx(1.0 / 2.0)
    assert p.support == pytest.approx(1.0 / 2.0)


def test_both_and_none():
    both = rec([0.5, 0.4, 0.0, 0.1, 0.05, -0.05, 0.0, 0.0], {"fewshot": 1.0, "query": 0.0, "answer_so_far": 0.0})
    assert classify(both).label == BOTH
    none = rec([0.05, 0.0, 0.0, 0.0, -0.6, -0.3, 0.2, 0.0], {"fewshot": 0.05, "query": -0.7, "answer_so_far": 0.0})
    assert classify(none).label == NONE


def test_special_tokens_count_for_oit_and_are_excluded_from_urt_denominator():
    tokens = ["<|endoftext|>", "a", "b", "c"]
    r = rec([5.0, -0.5, -0.4, 0.1], {"query": -0.8}, tokens)
    assert special_positions(r) == {0}
    p = classify(r)
    assert p.label == OIT  # the attention sink carries almost all of the push towards the wrong token
    assert p.support == pytest.approx(0.8 / 1.0)  # Σ|R| over a, b, c only
    assert classify(r, Thresholds(count_special=False)).label == NONE


def test_thresholds_are_parameters():
    r = rec([0.1, 0.0, 0.0, 0.0, -0.2, 0.0, 0.0, 0.0], {"fewshot": 0.1, "query": -0.2})
    # support = 0.2 / 0.3 = 0.67; oit share = 0.1 / 0.1 = 1
    assert classify(r).label == OIT
    assert classify(r, Thresholds(urt_max_support=0.9)).label == BOTH
    assert classify(r, Thresholds(oit_min_share=1.01)).label == NONE


def test_humaneval_segments_are_relevant():
    r = rec([0.1, 0.2, -0.5, -0.4], {"signature": -0.3, "docstring": -0.6})
    assert classify(r).label == NONE
    assert classify(rec([0.1, 0.2, 0.5, 0.4], {"signature": 0.3, "docstring": 0.9})).label == URT


def test_not_judged():
    assert classify(rec([0.1, 0.2], {})).label == NA  # no segment labels
    assert classify(rec([0.1, 0.2], {"fewshot": 0.3})).label == NA  # no relevant segment
    assert classify(rec([], {"query": 0.1})).label == NA
    assert classify(rec([0.1], {"query": 0.1}, status="skipped")).label == NA


def test_relevance_override_for_another_model():
    r = rec([0.1, 0.2, 0.5, 0.4], {"query": 1.2})
    assert classify(r).label == URT
    assert classify(r, relevance=[0.0, 0.0, -0.5, -0.4], segments={"query": -0.9}).label == NONE


def test_distribution_counts_attributed_only():
    recs = [
        rec([0.1, 0.2, 0.5, 0.4], {"query": 1.2}),
        rec([0.05, 0.0, -0.6, -0.3], {"fewshot": 0.05, "query": -0.9}),
        rec([0.1], {"query": 0.1}, status="error"),
    ]
    d = distribution(recs)
    assert d[URT] == 1 and d[NONE] == 1 and sum(d.values()) == 2
    assert distribution_by_task({"x": recs})["x"][URT] == 1


@pytest.mark.parametrize("tok", ["<|im_start|>", "<|endoftext|>", "<s>", "</s>", "<bos>", "<｜begin▁of▁sentence｜>", " <|im_end|>"])
def test_special_token_strings(tok):
    assert is_special_token(tok)


@pytest.mark.parametrize("tok", ["<script>", "hello", "<", "|>", "<a>", "", " "])
def test_ordinary_token_strings(tok):
    assert not is_special_token(tok)


def test_segments_derived_from_the_prompt_when_the_run_recorded_none():
    from lm_eval_lrp.patterns import derived_segments, token_spans

    prompt = 'def f(x):\n    """Add one."""\n'
    tokens = ["<|endoftext|>", "def", " f", "(x", "):\n", "   ", ' """', "Add", " one", '."""']  # trailing "\n" moved on
    r = {"task": "humaneval", "status": "attributed", "prompt": prompt, "tokens": tokens + [" return"],
         "n_prompt_tokens": len(tokens), "input_relevance": [9.0, 0.1, 0.2, 0.0, 0.0, 0.0, -0.3, -0.4, 0.1, 0.0, 0.5],
         "segments": {}}
    spans = token_spans(r)
    assert spans[0] == (0, 0) and spans[1] == (0, 3) and spans[-1][1] == len(prompt) - 1
    segs = derived_segments(r)
    # the token ' """' straddles the signature/docstring boundary: in neither (as in the harness)
    assert segs == pytest.approx({"signature": 0.3, "docstring": -0.3, "answer_so_far": 0.5})
    assert classify(r, segments=segs).label in (URT, NONE, OIT, BOTH)
    fewshot = {"task": "x", "prompt": "Q: a\nA: 1\n\nQ: b\nA:", "tokens": ["Q: a\nA: 1", "\n\n", "Q: b\nA:"],
               "n_prompt_tokens": 3, "input_relevance": [0.5, 0.1, -0.2]}
    assert derived_segments(fewshot, {"fewshot_delimiter": "\n\n"}, 1) == pytest.approx({"fewshot": 0.6, "query": -0.2})
    assert derived_segments({**fewshot, "tokens": ["Q: a", "zzz", "Q: b\nA:"]}, {}, 1) == {}  # strings do not match
