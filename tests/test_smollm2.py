"""The engine on the real embedded model: SmolLM2-135M-Instruct (GGUF, de-quantised to fp32)."""

from __future__ import annotations

import math

import pytest
import torch

from lm_eval_lrp.lrp import explain, gradient_x_input

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def case(smollm2):
    model, tokenizer = smollm2
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids[0]
    with torch.no_grad():
        logits = model(ids.unsqueeze(0)).logits[0, -1].float()
    target = int(logits.argmax())
    contrast = tokenizer.encode(" London", add_special_tokens=False)
    assert len(contrast) == 1
    contrast = contrast[0]
    assert target != contrast
    return model, tokenizer, ids, logits, target, contrast


def test_top_token_is_paris(case):
    _, tokenizer, _, _, target, _ = case
    assert tokenizer.decode([target]).strip() == "Paris"


def test_attnlrp_on_smollm2(case):
    model, tokenizer, ids, logits, target, contrast = case
    e = explain(model, ids, target=target, contrast=contrast)
    plain = float(logits[target] - logits[contrast])
    cons = e.conservation
    print(
        f"\nSmolLM2 AttnLRP: Δℓ(Paris − London) = {e.delta:.4f} (plain forward {plain:.4f}); "
        f"ΣR_input = {cons['sum_input']:.4f}; conservation ratio = {cons['ratio']:.4f}; "
        f"head_lost = {cons['head_lost']:.2e}; max |mlp_lost| = {max(abs(b['mlp_lost']) for b in cons['blocks']):.2e}"
    )
    tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    print("  input relevance:", ", ".join(f"{t}={r:+.3f}" for t, r in zip(tokens, e.input_relevance.tolist())))
    assert e.delta > 1.0  # a clean case
    assert e.delta == pytest.approx(plain, abs=1e-4)
    assert e.finite
    assert len(e.node_names) == 1 + 2 * model.config.num_hidden_layers
    assert math.isfinite(cons["ratio"]) and abs(cons["ratio"]) < 10
    assert abs(cons["head_lost"]) <= 1e-4 * abs(e.delta)
    for block in cons["blocks"]:
        assert abs(block["mlp_lost"]) <= 1e-4 * abs(e.delta), block

    # AttnLRP is not plain gradient × input
    gxi = gradient_x_input(model, ids, -1, target, contrast)
    assert torch.isfinite(gxi).all()
    assert not torch.allclose(gxi, e.input_relevance, rtol=0.05, atol=0.05 * float(e.input_relevance.abs().max()))


def test_cp_lrp_on_smollm2_is_conservative(case):
    model, _, ids, logits, target, contrast = case
    e = explain(model, ids, target=target, contrast=contrast, rule="cp")
    print(f"\nSmolLM2 CP-LRP: conservation ratio = {e.conservation['ratio']:.6f}")
    assert e.delta == pytest.approx(float(logits[target] - logits[contrast]), abs=1e-4)
    assert e.finite
    assert e.conservation["ratio"] == pytest.approx(1.0, abs=1e-3)
