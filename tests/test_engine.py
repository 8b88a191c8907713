"""The LRP engine on tiny seeded random models of every supported architecture (CPU, fast)."""

from __future__ import annotations

import math

import pytest
import torch
from arch_zoo import single_thread  # noqa: F401 (a fixture: one intra-op thread for tiny models)
from conftest import ARCHS, VOCAB, tiny_config, tiny_ids, tiny_model

from lm_eval_lrp.lrp import (
    UnsupportedArchitecture,
    attnlrp,
    cp_lrp,
    explain,
    explain_sequences,
    gradient_x_input,
)

RULES = {"attnlrp": attnlrp, "cp": cp_lrp}




# ----------------------------------------------------------------------------- helpers


def plain_last_logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(ids.unsqueeze(0)).logits[0, -1].float()


def top_and_bottom(model, ids) -> tuple[int, int]:
    """Target = the top token, contrast = the least likely one: a large, well-conditioned Δℓ."""
    logits = plain_last_logits(model, ids)
    return int(logits.argmax()), int(logits.argmin())


def hook_count(model) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
        for m in model.modules()
    )


def zero_biases(model) -> None:
    """Zero every bias (linear, Conv1D, LayerNorm): biases absorb relevance by construction."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.zero_()


def rel_close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> bool:
    """|a − b| ≤ rtol · max|b| elementwise (relative to the scale of the reference)."""
    scale = float(b.abs().max())
    return bool(((a - b).abs() <= rtol * scale + 1e-12).all())


# ----------------------------------------------------------------------------- forward unchanged, clean-up


@pytest.mark.parametrize("rule", ["attnlrp", "cp"])
@pytest.mark.parametrize("arch", ARCHS)
def test_forward_bit_identical(arch, rule):
    model = tiny_model(arch)
    ids = tiny_ids()
    emb = model.get_input_embeddings()(ids.unsqueeze(0)).detach()

    with torch.no_grad():
        ref_nograd = model(ids.unsqueeze(0)).logits
    ref_grad = model(inputs_embeds=emb.clone().requires_grad_(True)).logits.detach()

    with RULES[rule](model) as composite:
        assert composite.handles, "the composite registered no hooks"
        with torch.no_grad():
            in_nograd = model(ids.unsqueeze(0)).logits
        # with a graph being recorded the rules are live (they only act when the input requires grad)
        x = emb.clone().requires_grad_(True)
        out = model(inputs_embeds=x).logits
        assert out.requires_grad
        in_grad = out.detach()

    assert torch.equal(ref_nograd, in_nograd)
    assert torch.equal(ref_grad, in_grad)
    assert torch.equal(ref_nograd, ref_grad)


@pytest.mark.parametrize("rule", ["attnlrp", "cp"])
@pytest.mark.parametrize("arch", ARCHS)
def test_hooks_removed_and_requires_grad_restored(arch, rule):
    model = tiny_model(arch)
    params = list(model.parameters())
    flags = [i % 2 == 0 for i in range(len(params))]
    for p, flag in zip(params, flags):
        p.requires_grad_(flag)
    before = hook_count(model)

    with RULES[rule](model):
        assert hook_count(model) > before
        assert not any(p.requires_grad for p in model.parameters())
    assert hook_count(model) == before
    assert [p.requires_grad for p in model.parameters()] == flags

    with pytest.raises(RuntimeError, match="boom"):
        with RULES[rule](model):
            assert hook_count(model) > before
            raise RuntimeError("boom")
    assert hook_count(model) == before
    assert [p.requires_grad for p in model.parameters()] == flags

    # explain() itself (rules + node recorder) leaves nothing behind either
    explain(model, tiny_ids(), target=1, contrast=2, rule=rule)
    assert hook_count(model) == before
    assert [p.requires_grad for p in model.parameters()] == flags


# ----------------------------------------------------------------------------- the explained quantity and conservation


@pytest.mark.parametrize("rule", ["attnlrp", "cp"])
@pytest.mark.parametrize("arch", ARCHS)
def test_delta_equals_plain_logit_difference(arch, rule):
    model = tiny_model(arch)
    ids = tiny_ids()
    logits = plain_last_logits(model, ids)
    tgt, con = 5, 17
    e = explain(model, ids, target=tgt, contrast=con, rule=rule)
    assert e.delta == pytest.approx(float(logits[tgt] - logits[con]), abs=1e-5)
    assert e.target_logit == pytest.approx(float(logits[tgt]), abs=1e-5)
    assert e.contrast_logit == pytest.approx(float(logits[con]), abs=1e-5)
    assert (e.target_id, e.contrast_id) == (tgt, con)
    assert e.input_relevance.shape == (ids.numel(),)
    assert e.node_names == ["embed", "0.mid", "0.out", "1.mid", "1.out"]
    assert e.node_relevance.shape == (5, ids.numel())
    assert e.finite
    # the "embed" node is the residual stream entering block 0: the input embedding itself, except for GPT-2
    # where the learned position embeddings have been added to it (and carry relevance of their own)
    if arch == "gpt2":
        assert not torch.allclose(e.node("embed"), e.input_relevance, atol=1e-3)
    else:
        assert torch.allclose(e.node("embed"), e.input_relevance, atol=1e-6)

    # an explained position other than the last one
    with torch.no_grad():
        logits_3 = model(ids.unsqueeze(0)).logits[0, 3]
    e3 = explain(model, ids, position=3, target=tgt, contrast=con, rule=rule)
    assert e3.position == 3
    assert e3.delta == pytest.approx(float(logits_3[tgt] - logits_3[con]), abs=1e-5)
    # causal: tokens after the explained position get no relevance
    assert torch.count_nonzero(e3.input_relevance[4:]) == 0


@pytest.mark.parametrize("arch", ARCHS)
def test_attnlrp_mlp_norms_and_head_conservative(arch):
    model = tiny_model(arch)
    if arch == "gpt2":
        # GPT-2's MLP and LayerNorms carry biases, which absorb relevance; without them they must conserve too.
        zero_biases(model)
    ids = tiny_ids()
    tgt, con = top_and_bottom(model, ids)
    e = explain(model, ids, target=tgt, contrast=con)
    cons = e.conservation
    scale = abs(e.delta)
    assert scale > 1.0
    assert len(cons["blocks"]) == 2
    for block in cons["blocks"]:
        assert abs(block["mlp_lost"]) <= 1e-4 * scale, block
        assert block["lost"] == pytest.approx(block["attn_lost"] + block["mlp_lost"], abs=1e-6 * scale)
    # final norm (identity rule) and LM head are conservative: the last block's output holds Δℓ
    assert abs(cons["head_lost"]) <= 1e-4 * scale
    assert math.isfinite(cons["ratio"])


def test_gpt2_biases_absorb_relevance():
    """Counterpart of the test above: with its (non-zero) biases GPT-2's MLP blocks are not conservative."""
    model = tiny_model("gpt2")  # LayerNorm biases are randomised
    ids = tiny_ids()
    tgt, con = top_and_bottom(model, ids)
    e = explain(model, ids, target=tgt, contrast=con)
    assert max(abs(b["mlp_lost"]) for b in e.conservation["blocks"]) > 1e-2 * abs(e.delta)


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen3", "gemma3", "olmo2"])
def test_cp_lrp_conservative_without_biases(arch):
    model = tiny_model(arch)
    ids = tiny_ids()
    tgt, con = top_and_bottom(model, ids)
    e = explain(model, ids, target=tgt, contrast=con, rule="cp")
    assert abs(e.delta) > 1.0
    assert float(e.input_relevance.double().sum()) == pytest.approx(e.delta, rel=1e-4)
    assert e.conservation["ratio"] == pytest.approx(1.0, abs=1e-4)
    for block in e.conservation["blocks"]:
        assert abs(block["lost"]) <= 1e-4 * abs(e.delta)


def test_cp_lrp_qwen2_bias_absorption():
    """Qwen2 has q/k/v biases. Under CP-LRP q and k are constants, so their biases cannot absorb relevance: with only
    the v bias zeroed CP-LRP is exactly conservative; a non-zero v bias absorbs relevance and breaks conservation."""
    model = tiny_model("qwen2")
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj):
                proj.bias.copy_(torch.randn(proj.bias.shape, generator=gen))
            layer.self_attn.v_proj.bias.zero_()
    ids = tiny_ids()
    tgt, con = top_and_bottom(model, ids)
    e = explain(model, ids, target=tgt, contrast=con, rule="cp")
    assert e.conservation["ratio"] == pytest.approx(1.0, abs=1e-4)

    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.v_proj.bias.copy_(torch.randn(layer.self_attn.v_proj.bias.shape, generator=gen))
    tgt, con = top_and_bottom(model, ids)
    e = explain(model, ids, target=tgt, contrast=con, rule="cp")
    assert abs(e.conservation["ratio"] - 1.0) > 1e-2


def test_cp_lrp_gpt2_conservative_only_without_biases_and_positions():
    """GPT-2 is excluded from exact CP conservation: its learned position embeddings (added inside the model, not
    part of the explained input) and its biases absorb relevance. Removing both restores conservation."""
    model = tiny_model("gpt2")
    ids = tiny_ids()
    tgt, con = top_and_bottom(model, ids)
    e = explain(model, ids, target=tgt, contrast=con, rule="cp")
    assert abs(e.conservation["ratio"] - 1.0) > 1e-2

    zero_biases(model)
    with torch.no_grad():
        model.transformer.wpe.weight.zero_()
    tgt, con = top_and_bottom(model, ids)
    e = explain(model, ids, target=tgt, contrast=con, rule="cp")
    assert e.conservation["ratio"] == pytest.approx(1.0, abs=1e-4)


# ----------------------------------------------------------------------------- linearity, implementations, baselines


@pytest.mark.parametrize("arch", ARCHS)
def test_contrast_is_difference_of_single_logits(arch):
    model = tiny_model(arch)
    ids = tiny_ids()
    tgt, con = 5, 17
    both = explain(model, ids, target=tgt, contrast=con)
    only_t = explain(model, ids, target=tgt)
    only_c = explain(model, ids, target=con)
    assert both.contrast_id == con and only_t.contrast_id is None
    assert both.delta == pytest.approx(only_t.delta - only_c.delta, abs=1e-5)
    diff = only_t.input_relevance - only_c.input_relevance
    assert torch.allclose(both.input_relevance, diff, atol=1e-5)
    assert torch.allclose(both.node_relevance, only_t.node_relevance - only_c.node_relevance, atol=1e-5)
    # not trivially zero: the single-logit relevances are distinct and non-negligible
    assert not torch.allclose(only_t.input_relevance, only_c.input_relevance, atol=1e-3)


@pytest.mark.parametrize("rule", ["attnlrp", "cp"])
@pytest.mark.parametrize("arch", ARCHS)
def test_sdpa_equals_eager(arch, rule):
    eager = tiny_model(arch, attn="eager")
    sdpa = tiny_model(arch, attn="sdpa")
    assert eager.config._attn_implementation == "eager"
    assert sdpa.config._attn_implementation == "sdpa"
    assert all(torch.equal(p, q) for p, q in zip(eager.parameters(), sdpa.parameters()))
    ids = tiny_ids()
    tgt, con = top_and_bottom(eager, ids)
    a = explain(eager, ids, target=tgt, contrast=con, rule=rule)
    b = explain(sdpa, ids, target=tgt, contrast=con, rule=rule)
    assert b.delta == pytest.approx(a.delta, rel=1e-5)
    assert rel_close(b.input_relevance, a.input_relevance, 1e-5)
    assert rel_close(b.node_relevance, a.node_relevance, 1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_gradient_x_input_is_plain_and_differs_from_attnlrp(arch):
    model = tiny_model(arch)
    ids = tiny_ids()
    tgt, con = top_and_bottom(model, ids)
    gxi = gradient_x_input(model, ids, -1, tgt, con)

    # reference: ordinary autograd outside any composite
    emb = model.get_input_embeddings()(ids.unsqueeze(0)).detach().requires_grad_(True)
    logits = model(inputs_embeds=emb).logits[0, -1]
    (g,) = torch.autograd.grad(logits[tgt] - logits[con], [emb])
    ref = (emb.detach() * g).sum(-1)[0]
    assert gxi.shape == (ids.numel(),)
    assert torch.allclose(gxi, ref, atol=1e-5)

    lrp = explain(model, ids, target=tgt, contrast=con).input_relevance
    scale = float(lrp.abs().max())
    assert not torch.allclose(gxi, lrp, rtol=0.05, atol=0.05 * scale)


@pytest.mark.parametrize("arch", ARCHS)
def test_attnlrp_is_not_cp(arch):
    model = tiny_model(arch)
    ids = tiny_ids()
    tgt, con = top_and_bottom(model, ids)
    a = explain(model, ids, target=tgt, contrast=con, rule="attnlrp")
    c = explain(model, ids, target=tgt, contrast=con, rule="cp")
    assert a.rule == "attnlrp" and c.rule == "cp"
    assert a.delta == pytest.approx(c.delta, abs=1e-6)  # same forward
    scale = float(c.input_relevance.abs().max())
    assert not torch.allclose(a.input_relevance, c.input_relevance, rtol=0.05, atol=0.05 * scale)
    assert math.isfinite(a.conservation["ratio"])
    assert a.finite and c.finite


# ----------------------------------------------------------------------------- unsupported architectures


@pytest.mark.parametrize("kind", ["phi", "falcon"])
def test_unsupported_architecture(kind):
    import transformers as tf

    if kind == "phi":
        config = tf.PhiConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=VOCAB
        )
    else:
        config = tf.FalconConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, vocab_size=VOCAB)
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(config).eval()
    flags = [p.requires_grad for p in model.parameters()]
    before = hook_count(model)

    with pytest.raises(UnsupportedArchitecture) as info:
        explain(model, tiny_ids(), target=1, contrast=2)
    message = str(info.value)
    assert repr(config.model_type) in message
    for supported in ("llama", "mistral", "qwen2", "qwen3", "gemma3_text", "olmo2", "gpt2"):
        assert supported in message
    assert "lm_eval_lrp/lrp/arch/" in message
    assert isinstance(info.value, ValueError)

    with pytest.raises(UnsupportedArchitecture):
        with attnlrp(model):
            pass
    with pytest.raises(UnsupportedArchitecture):
        explain(model, tiny_ids(), target=1, contrast=2, rule="cp")
    assert hook_count(model) == before
    assert [p.requires_grad for p in model.parameters()] == flags


# ----------------------------------------------------------------------------- half precision


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("arch", ARCHS)
def test_half_precision(arch, dtype):
    ids = tiny_ids()
    ref_model = tiny_model(arch)
    tgt, con = top_and_bottom(ref_model, ids)
    ref = explain(ref_model, ids, target=tgt, contrast=con)

    model = tiny_model(arch).to(dtype)
    assert model.get_input_embeddings().weight.dtype == dtype
    for rule in ("attnlrp", "cp"):
        e = explain(model, ids, target=tgt, contrast=con, rule=rule)
        assert e.input_relevance.dtype == torch.float32
        assert e.finite
        assert math.isfinite(e.conservation["ratio"])
        assert e.delta == pytest.approx(ref.delta, abs=0.1 + 0.05 * abs(ref.delta))
    # AttnLRP relevances themselves are close to fp32's at the coarse level
    e = explain(model, ids, target=tgt, contrast=con)
    assert float(e.input_relevance.sum()) == pytest.approx(float(ref.input_relevance.sum()), abs=0.1 * abs(ref.delta))


# ----------------------------------------------------------------------------- sequence-level contrast


def _plain_sequence_logprob(model, context, continuation) -> float:
    ids = torch.tensor(context + continuation)
    with torch.no_grad():
        logp = torch.log_softmax(model(ids.unsqueeze(0)).logits[0].double(), -1)
    n = len(context)
    return float(sum(logp[n - 1 + i, tok] for i, tok in enumerate(continuation)))


@pytest.mark.parametrize("arch", ARCHS)
def test_explain_sequences(arch):
    model = tiny_model(arch)
    context = tiny_ids(9).tolist()
    wrong, gold = [11, 42, 7], [11, 60]
    s = explain_sequences(model, context, wrong, gold)
    lp_w = _plain_sequence_logprob(model, context, wrong)
    lp_g = _plain_sequence_logprob(model, context, gold)
    assert s.logprob_wrong == pytest.approx(lp_w, abs=1e-4)
    assert s.logprob_gold == pytest.approx(lp_g, abs=1e-4)
    assert s.delta == pytest.approx(lp_w - lp_g, abs=1e-4)
    assert s.context_relevance.shape == (len(context),)
    assert s.finite
    assert float(s.context_relevance.abs().max()) > 0

    with pytest.raises(ValueError, match="identical"):
        explain_sequences(model, context, wrong, list(wrong))
    with pytest.raises(ValueError):
        explain_sequences(model, context, [], gold)
    with pytest.raises(ValueError):
        explain_sequences(model, [], wrong, gold)


# ----------------------------------------------------------------------------- bad inputs


def test_bad_inputs():
    model = tiny_model("llama")
    ids = tiny_ids()
    before = hook_count(model)
    with pytest.raises(ValueError, match="same token"):
        explain(model, ids, target=5, contrast=5)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        explain(model, ids, target=VOCAB, contrast=5)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        explain(model, ids, target=5, contrast=-1)
    with pytest.raises(ValueError, match="non-empty"):
        explain(model, [], target=5, contrast=6)
    with pytest.raises(ValueError, match="non-empty"):
        explain(model, torch.zeros(0, dtype=torch.long), target=5, contrast=6)
    with pytest.raises(ValueError, match="batch size 1"):
        explain(model, ids.repeat(2, 1), target=5, contrast=6)
    with pytest.raises(ValueError, match="variant"):
        explain(model, ids, target=5, contrast=6, rule="lrp-eps")
    assert hook_count(model) == before


def test_tiny_configs_are_the_requested_shape():
    """Guards the fixtures: the shapes above are what the tests claim to exercise."""
    for arch in ARCHS:
        config = tiny_config(arch)
        if arch == "gpt2":
            assert (config.n_embd, config.n_layer, config.n_head) == (32, 2, 4)
        else:
            assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (32, 2, 4)
            assert (config.num_key_value_heads, config.head_dim) == (2, 8)
        assert config.vocab_size == VOCAB


# ----------------------------------------------------------------------------- an independent reference


@pytest.mark.parametrize("rule", ["attnlrp", "cp"])
def test_matches_reference_implementation(rule):
    """AttnLRP / CP-LRP written directly on the operations of a Llama forward (tests/arch_reference.py; every
    family it covers is checked the same way in tests/test_arch_families.py)."""
    from arch_reference import assert_matches_reference

    assert_matches_reference(tiny_model("llama"), tiny_ids(), rule)


# ----------------------------------------------------------------------------- one forward, chosen positions


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_one_forward_explains_any_position_like_a_fresh_explain(arch):
    """LRPForward: greedy tokens of a teacher-forced forward, then backward passes from positions chosen after it,
    equal explain() on the prefix (what the harness relies on for generate_until: no second forward)."""
    from lm_eval_lrp.lrp import LRPForward

    model = tiny_model(arch, attn="sdpa")
    ids = tiny_ids(14, seed=3)
    with torch.no_grad():
        logits = model(ids.unsqueeze(0)).logits[0]
    with LRPForward(model, ids) as fwd:
        assert fwd.greedy(start=5) == logits[5:].argmax(-1).tolist()
        for pos in (6, 9, 13):
            target, contrast = int(logits[pos].argmax()), int(logits[pos].argmin())
            full = fwd.explain(pos, target, contrast, retain_graph=True)
            got = full.prefix(pos + 1)
            want = explain(model, ids[: pos + 1], -1, target, contrast)
            assert got.input_ids == want.input_ids and got.position == want.position == pos
            assert got.delta == pytest.approx(want.delta, abs=1e-5)
            torch.testing.assert_close(got.input_relevance, want.input_relevance, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(got.node_relevance, want.node_relevance, atol=1e-5, rtol=1e-4)
            assert got.node_names == want.node_names
            # nothing after the explained position can matter (causal model)
            assert full.input_relevance[pos + 1 :].abs().sum().item() == 0.0
        fwd.explain(4, target, contrast)  # without retain_graph the graph is freed as the backward goes
        with pytest.raises(RuntimeError, match="retain_graph=True"):
            fwd.explain(5, target, contrast)
    assert hook_count(model) == 0
    with pytest.raises(RuntimeError, match="released"):
        fwd.explain(3, 1, 2)
    with pytest.raises(ValueError, match="explained position"):
        want.prefix(pos)
