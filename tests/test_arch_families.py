"""Every supported model type, on a tiny seeded random model built from transformers' own config class:
forward unchanged, hooks removed, CP-LRP conservation, sdpa = eager, AttnLRP/CP-LRP equal to a plain reference
implementation of the rules (tests/arch_reference.py), and the self-check's figures."""

from __future__ import annotations

import pytest
import torch
from arch_reference import assert_matches_reference
from arch_zoo import ZOO, model_type_of, single_thread, tiny  # noqa: F401 (single_thread: a fixture)
from conftest import tiny_ids

from lm_eval_lrp.lrp import Composite, explain, supported_model_types
from lm_eval_lrp.lrp.selfcheck import self_check

FAMILIES = sorted(ZOO)
#: families the reference implementation (Llama-shaped decoders, MLA) covers; GPT-2 has its own in test_engine.py;
#: GPT-NeoX, Llama-4 (complex RoPE, NoPE temperature) and gpt-oss (sinks, clamped SwiGLU): conservation and graphs;
#: linear-attention and state-space hybrids: their mixers against independent references in test_arch_linear.py
LINEAR = ("qwen3_next", "qwen3_5", "mamba", "bamba", "granitemoehybrid", "falcon_mamba", "jamba", "lfm2", "nemotron_h")
#: configurations transformers loads into LlamaForCausalLM / DeepseekV3ForCausalLM (the reference runs on those);
#: Mistral 4's interleaved RoPE is not in the reference
ALIASES = ("mistral4",)
REFERENCE = [f for f in FAMILIES if not f.startswith(("gpt2", "gpt_neox", "llama4", "gpt_oss") + LINEAR + ALIASES)]
NO_SDPA = {"gemma2", "gpt_oss", "mamba2", "mamba", "falcon_mamba"}  # soft-capped scores / sinks: transformers runs them eagerly only; no attention


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def extremes(model, ids) -> tuple[int, int]:
    with torch.no_grad():
        logits = model(ids.unsqueeze(0)).logits[0, -1]
    return int(logits.argmax()), int(logits.argmin())


def test_at_least_thirty_five_model_types():
    """Every registered type has a tiny model here (so each is tested below), and there are at least 35."""
    assert len(supported_model_types()) >= 35
    assert {model_type_of(f) for f in FAMILIES} == set(supported_model_types())


@pytest.mark.parametrize("variant", ["attnlrp", "cp"])
@pytest.mark.parametrize("family", FAMILIES)
def test_forward_unchanged_and_hooks_removed(family, variant):
    model = tiny(family)
    ids = tiny_ids()
    before = hook_count(model)
    with torch.no_grad():
        plain = model(ids.unsqueeze(0)).logits
    emb = model.get_input_embeddings()(ids.unsqueeze(0)).detach()
    with Composite(model, variant) as composite:
        assert composite.handles
        out = model(inputs_embeds=emb.clone().requires_grad_(True)).logits
        assert out.requires_grad
    assert torch.equal(out.detach(), model(inputs_embeds=emb).logits.detach())
    torch.testing.assert_close(out.detach(), plain, rtol=0, atol=1e-5)
    assert hook_count(model) == before
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_cp_lrp_conserves(family):
    """ΣR_input + relevance absorbed by biases/position embeddings = Δℓ (the self-check's figure, ≤ 1e-4), and without
    additive constants the explanation's own input relevance sums to Δℓ."""
    model = tiny(family)
    figures = self_check(model, tolerance=1e-4)
    assert figures["passed"] and figures["conservation_rel_error"] <= 1e-4
    assert figures["forward_max_abs_diff"] <= 1e-5 * (1 + abs(figures["delta"]))
    assert abs(figures["delta"]) > 0.5
    if figures["cp_absorbed"] == 0.0:
        ids = tiny_ids()
        tgt, con = extremes(model, ids)
        e = explain(model, ids, target=tgt, contrast=con, rule="cp")
        assert float(e.input_relevance.double().sum()) == pytest.approx(e.delta, rel=1e-4)


@pytest.mark.parametrize("variant", ["attnlrp", "cp"])
@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in NO_SDPA])
def test_sdpa_equals_eager(family, variant):
    eager, sdpa = tiny(family, attn="eager"), tiny(family, attn="sdpa")
    ids = tiny_ids()
    tgt, con = extremes(eager, ids)
    a = explain(eager, ids, target=tgt, contrast=con, rule=variant)
    b = explain(sdpa, ids, target=tgt, contrast=con, rule=variant)
    scale = float(a.node_relevance.abs().max())
    assert b.delta == pytest.approx(a.delta, rel=1e-5)
    assert float((a.node_relevance - b.node_relevance).abs().max()) <= 1e-5 * scale


@pytest.mark.parametrize("variant", ["attnlrp", "cp"])
@pytest.mark.parametrize("family", REFERENCE)
def test_matches_reference_implementation(family, variant):
    assert_matches_reference(tiny(family), tiny_ids(), variant)
