"""Deletion-curve faithfulness on a tiny seeded random Llama (CPU, fast)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_ids, tiny_model

from lm_eval_lrp.faithfulness import _deltas, candidate_positions, curve_area, default_steps, deletion_curve, faithfulness
from lm_eval_lrp.lrp import explain

T = 24


@pytest.fixture(scope="module", params=["eager", "sdpa"])
def case(request):
    model = tiny_model("llama", attn=request.param)
    ids = tiny_ids(T, seed=3)
    with torch.no_grad():
        logits = model(ids.unsqueeze(0)).logits[0, -1]
    # target = the top token, contrast = the runner-up: a clear but not saturated preference
    top2 = logits.topk(2).indices
    return model, ids, T - 1, int(top2[0]), int(top2[1])


def plain_delta(model, ids, pos, target, contrast, keep=None):
    """Δℓ of a plain forward; ``keep`` deletes the other tokens but keeps the original position ids."""
    keep = list(range(pos + 1)) if keep is None else keep
    with torch.no_grad():
        logits = model(ids[keep].unsqueeze(0), position_ids=torch.tensor([keep])).logits[0, -1]
    return float(logits[target] - logits[contrast])


def test_mask_nothing_is_plain_forward(case):
    model, ids, pos, tgt, con = case
    curve = deletion_curve(model, ids, pos, tgt, con, order=[], steps=[0])
    assert curve["steps"] == [0]
    assert curve["curve"][0] == pytest.approx(plain_delta(model, ids, pos, tgt, con), abs=1e-5)


def test_mask_equals_deleting_the_token(case):
    """A 2-D mask with zeros in the middle: the same logits as deleting those tokens (positions unchanged)."""
    model, ids, pos, tgt, con = case
    for removed in ([5], [0], [2, 9, 17], list(range(1, 12))):
        curve = deletion_curve(model, ids, pos, tgt, con, order=removed, steps=[len(removed)])
        keep = [i for i in range(pos + 1) if i not in removed]
        assert curve["curve"][-1] == pytest.approx(plain_delta(model, ids, pos, tgt, con, keep), abs=1e-4)
        assert curve["curve"][-1] != pytest.approx(curve["curve"][0], abs=1e-4)  # removing tokens changes Δℓ


def test_curve_starts_at_explains_delta(case):
    model, ids, pos, tgt, con = case
    expl = explain(model, ids, pos, tgt, con, nodes=False)
    out = faithfulness(model, ids, pos, tgt, con, expl.input_relevance, seed=0)
    for name in ("attnlrp", "grad_x_input", "cp", "random"):
        assert out["curves"][name][0] == pytest.approx(expl.delta, rel=1e-5, abs=1e-5)
        assert out["area"][name] is not None
    assert out["delta"] == pytest.approx(expl.delta, rel=1e-5, abs=1e-5)
    assert out["steps"] == default_steps(T - 1) == [0, 1, 2, 4, 8, 16, 23]
    assert out["method"] == "mask" and out["n_candidates"] == T - 1
    assert set(out["attnlrp_beats"]) == {"grad_x_input", "random", "cp"}
    # removing tokens changes Δℓ
    assert any(abs(x - expl.delta) > 1e-3 for x in out["curves"]["attnlrp"][1:])
    json.dumps(out, allow_nan=False)  # JSON-ready, no NaN


def test_random_order_seeded(case):
    model, ids, pos, tgt, con = case
    rel = explain(model, ids, pos, tgt, con, nodes=False).input_relevance
    a = faithfulness(model, ids, pos, tgt, con, rel, seed=7)
    b = faithfulness(model, ids, pos, tgt, con, rel, seed=7)
    c = faithfulness(model, ids, pos, tgt, con, rel, seed=8)
    assert a["curves"]["random"] == b["curves"]["random"]
    assert a["curves"]["random"] != c["curves"]["random"]
    assert a["curves"]["attnlrp"] == c["curves"]["attnlrp"]  # only the random order depends on the seed


def test_true_effect_ranking_beats_random_and_its_reverse(case):
    """Ranking by each token's own removal effect: best first step, and a smaller area than random or its reverse."""
    model, ids, pos, tgt, con = case
    cands = candidate_positions(model, ids, pos)
    singles = _deltas(model, ids, pos, tgt, con, [[i] for i in cands], "mask")
    start = plain_delta(model, ids, pos, tgt, con)
    effect = torch.zeros(pos + 1)
    for i, d in zip(cands, singles):
        effect[i] = start - d  # how much removing token i alone lowers Δℓ
    best = deletion_curve(model, ids, pos, tgt, con, order=sorted(cands, key=lambda i: -float(effect[i])))
    worst = deletion_curve(model, ids, pos, tgt, con, order=sorted(cands, key=lambda i: float(effect[i])))
    assert best["curve"][1] == pytest.approx(min(singles), abs=1e-5)
    assert best["area"] < worst["area"]
    out = faithfulness(model, ids, pos, tgt, con, effect, seed=0)  # the effect ranking in AttnLRP's slot
    assert out["curves"]["attnlrp"] == pytest.approx(best["curve"], abs=1e-5)
    wins = 0
    for seed in range(10):
        rand = faithfulness(model, ids, pos, tgt, con, effect, seed=seed)
        assert rand["curves"]["attnlrp"][1] <= rand["curves"]["random"][1] + 1e-5  # k = 1 is optimal
        wins += rand["attnlrp_beats"]["random"]
    assert wins >= 9


def test_candidates_and_steps():
    model = tiny_model("llama")
    ids = tiny_ids(10, seed=1)
    assert candidate_positions(model, ids, 9) == list(range(9))
    assert candidate_positions(model, ids, 5) == list(range(5))  # nothing after the explained position
    assert candidate_positions(model, ids, 9, n_candidates=4) == [0, 1, 2, 3]
    with_bos = ids.clone()
    with_bos[0] = model.config.bos_token_id
    assert candidate_positions(model, with_bos, 9) == list(range(1, 9))  # BOS (attention sink) is not removed
    assert default_steps(100) == [0, 1, 2, 4, 8, 16, 32, 64]
    assert default_steps(5) == [0, 1, 2, 4, 5]
    assert default_steps(0) == [0]
    assert default_steps(40, cap=8) == [0, 1, 2, 4, 8]
    assert curve_area([2.0, 1.0, 0.0]) == pytest.approx(0.5)
    assert curve_area([-1.0, 0.0]) is None
    # order entries outside the candidates are dropped: the explained position and past-the-end tokens
    curve = deletion_curve(model, ids, 6, 3, 4, order=[6, 8, 2, 2, 1], steps=None)
    assert curve["removed"] == [2, 1] and curve["steps"] == [0, 1, 2]


def test_replace_method(case):
    model, ids, pos, tgt, con = case
    order = [3, 7, 11]
    rep = deletion_curve(model, ids, pos, tgt, con, order, steps=[3], method="replace:0")
    swapped = ids.clone()
    swapped[order] = 0
    assert rep["curve"][0] == pytest.approx(plain_delta(model, ids, pos, tgt, con), abs=1e-5)
    assert rep["curve"][1] == pytest.approx(plain_delta(model, swapped, pos, tgt, con), abs=1e-4)
    with pytest.raises(ValueError):
        deletion_curve(model, ids, pos, tgt, con, order, method="blur")


def test_cp_relevance_is_labelled_cp(case):
    """Under --lrp_rule cp the given relevance is CP-LRP's: it is named so, and AttnLRP is the one recomputed."""
    model, ids, pos, tgt, con = case
    cp = explain(model, ids, pos, tgt, con, rule="cp", nodes=False).input_relevance
    out = faithfulness(model, ids, pos, tgt, con, cp, seed=0, rule="cp")
    assert out["rule"] == "cp" and set(out["curves"]) == {"cp", "attnlrp", "grad_x_input", "random"}
    ref = faithfulness(model, ids, pos, tgt, con, explain(model, ids, pos, tgt, con, nodes=False).input_relevance, seed=0)
    assert out["curves"]["cp"] == pytest.approx(ref["curves"]["cp"], abs=1e-5)
    assert out["curves"]["attnlrp"] == pytest.approx(ref["curves"]["attnlrp"], abs=1e-5)
    assert set(out["beats"]) == {"grad_x_input", "random", "attnlrp"} and out["attnlrp_beats"] == ref["attnlrp_beats"]
    with pytest.raises(ValueError, match="rule"):
        faithfulness(model, ids, pos, tgt, con, cp, rule="lrp")


def test_flip_count_is_the_first_k_that_flips(case):
    """The paper's flip count: tokens removed in ranking order until Δℓ ≤ 0, checked against every k."""
    from lm_eval_lrp.faithfulness import flip_count

    model, ids, pos, tgt, con = case
    rel = explain(model, ids, pos, tgt, con, nodes=False).input_relevance
    out = faithfulness(model, ids, pos, tgt, con, rel, seed=0, flip_max=T)
    assert set(out["flip"]) == {"attnlrp", "cp", "grad_x_input", "random"} and out["flip_max"] == T
    cands = candidate_positions(model, ids, pos)
    flipped = 0
    for name in ("attnlrp", "random"):
        order = sorted(cands, key=lambda i: -float(rel[i])) if name == "attnlrp" else None
        if order is None:
            import random

            order = list(cands)
            random.Random(0).shuffle(order)
        every = deletion_curve(model, ids, pos, tgt, con, order=order, steps=list(range(len(cands) + 1)))["curve"]
        first = next((k for k, d in enumerate(every) if k and d <= 0), None)
        assert out["flip"][name] == first == flip_count(model, ids, pos, tgt, con, order, max_k=T, batch=3)
        flipped += first is not None
    assert flipped  # the runner-up is close: some order flips the preference
    assert flip_count(model, ids, pos, tgt, con, [], max_k=5) is None
    assert "flip" not in faithfulness(model, ids, pos, tgt, con, rel, flips=False)
