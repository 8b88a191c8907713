"""The rules of the linear-attention and state-space mixers (docs/architectures-linear.md), checked against
transformers' own torch implementations of the same layers:

* the recomputation under the rules has the module's forward value (also across the chunk boundaries of the chunked
  forms);
* each mixer is conservative on its own in both variants: Σ x·g̃ over its input + relevance absorbed by its biases
  = Σ y·w for any seed w (the multiplicative products are multilinear once gates and decays are constant, and the
  uniform rule splits them into thirds);
* CP-LRP's gradient into the value path equals the plain gradient of transformers' own chunked scan with the gates,
  q/k (B/C) held constant, and AttnLRP's is a third of it;
* a call that continues a recurrent cache is refused instead of explained wrongly.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from arch_zoo import single_thread, tiny  # noqa: F401 (single_thread: a fixture)

from lm_eval_lrp.lrp import Composite, UnsupportedArchitecture, architecture_of
from lm_eval_lrp.lrp.arch._recurrent import gated_delta_rule, selective_scan, selective_scan_diagonal

#: zoo entry -> the block attribute of its recurrent mixer
MIXERS = {"qwen3_next": "linear_attn", "qwen3_5_text": "linear_attn", "mamba2": "mixer", "bamba": "mamba",
          "granitemoehybrid": "mamba", "mamba": "mixer", "falcon_mamba": "mixer", "jamba": "mamba", "lfm2": "conv", "lfm2_moe": "conv", "nemotron_h": "mixer"}


def mixer_and_rule(family: str, variant: str):
    model = tiny(family)
    arch = architecture_of(model)
    block = next(b for b in arch.blocks(model) if hasattr(b, MIXERS[family]))
    mixer = getattr(block, MIXERS[family])
    rule = dict(arch.block_rules(variant))[MIXERS[family]]
    return model, mixer, rule.bind(block) if hasattr(rule, "bind") else rule


@pytest.mark.parametrize("variant", ["attnlrp", "cp"])
@pytest.mark.parametrize("family", sorted(MIXERS))
def test_mixer_is_conservative_and_keeps_its_value(family, variant):
    model, mixer, rule = mixer_and_rule(family, variant)
    T = 70 if family.startswith("qwen3") else 20  # the gated delta-net's chunked forward uses chunks of 64
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, T, model.config.hidden_size, generator=gen).requires_grad_(True)
    with torch.no_grad():
        value = mixer(x)
    rule.collect, rule.leaves = True, []  # the convolution bias (if any) as a leaf
    with torch.enable_grad():
        y = rule.surrogate(mixer, x, None)
        torch.testing.assert_close(y.detach(), value, rtol=1e-4, atol=1e-4 * float(value.abs().max()))
        w = torch.randn(y.shape, generator=gen)
        seed = (y * w).sum()
        grads = torch.autograd.grad(seed, [x] + rule.leaves)
    absorbed = sum(float((leaf.detach().double() * g.double()).sum()) for leaf, g in zip(rule.leaves, grads[1:]))
    biases = [m.bias for m in (mixer.in_proj if hasattr(mixer, "in_proj") else None, mixer.out_proj)
              if m is not None and m.bias is not None]
    assert not biases  # (the zoo's mixers have no projection biases: the sum below is then exact)
    total = float((x.detach().double() * grads[0].double()).sum()) + absorbed
    assert total == pytest.approx(float(seed), rel=1e-4, abs=1e-5)
    if variant == "cp":  # something is explained: the input holds a real share
        assert abs(float((x * grads[0]).sum())) > 1e-3 * abs(float(seed))


def _qkv(T=70, H=2, dk=8, dv=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.nn.functional.normalize(torch.randn(1, T, H, dk, generator=g), dim=-1) for _ in range(2))
    v = torch.randn(1, T, H, dv, generator=g)
    decay = -torch.rand(1, T, H, generator=g)
    beta = torch.rand(1, T, H, generator=g)
    return q, k, v, decay, beta


def test_gated_delta_rule_matches_transformers_chunked_form():
    """Value and the gradients of the value path: CP-LRP = plain gradient with q, k, gates constant (transformers'
    chunked torch form); AttnLRP = a third of it, and a third of the plain gradient into q."""
    ref_fn = importlib.import_module("transformers.models.qwen3_next.modeling_qwen3_next").torch_chunk_gated_delta_rule
    q, k, v, decay, beta = _qkv()
    w = torch.randn(1, 70, 2, 8, generator=torch.Generator().manual_seed(1))
    dk = q.shape[-1]

    def ref(q_, v_):
        out, _ = ref_fn(q_, k, v_, g=decay, beta=beta, use_qk_l2norm_in_kernel=False)
        return out

    vr, qr = v.clone().requires_grad_(True), q.clone().requires_grad_(True)
    out = ref(qr, vr)
    g_v, g_q = torch.autograd.grad((out * w).sum(), [vr, qr])
    for variant, factor in (("cp", 1.0), ("attnlrp", 1.0 / 3.0)):
        vm, qm = v.clone().requires_grad_(True), q.clone().requires_grad_(True)
        mine = gated_delta_rule(qm / dk ** 0.5, k, vm, decay, beta, variant)
        torch.testing.assert_close(mine.detach(), out.detach(), rtol=1e-4, atol=1e-5)
        got_v, got_q = torch.autograd.grad((mine * w).sum(), [vm, qm], allow_unused=True)
        torch.testing.assert_close(got_v, factor * g_v, rtol=1e-4, atol=1e-5)
        if variant == "cp":
            assert got_q is None or float(got_q.abs().max()) == 0.0
        else:
            torch.testing.assert_close(got_q, factor * g_q, rtol=1e-4, atol=1e-5)


def test_mamba2_scan_matches_transformers_chunked_form():
    scan = importlib.import_module("transformers.models.mamba2.modeling_mamba2").mamba2_chunk_scan
    g = torch.Generator().manual_seed(2)
    b, T, H, P, N = 1, 19, 4, 8, 6
    x, B, C = torch.randn(b, T, H, P, generator=g), torch.randn(b, T, H, N, generator=g), torch.randn(b, T, H, N, generator=g)
    dt, A = torch.rand(b, T, H, generator=g), -torch.rand(H, generator=g) - 0.1
    w = torch.randn(b, T, H, P, generator=g)
    xr = x.clone().requires_grad_(True)
    ref = scan(xr, dt, A, B, C, chunk_size=8)
    (g_x,) = torch.autograd.grad((ref * w).sum(), [xr])
    for variant, factor in (("cp", 1.0), ("attnlrp", 1.0 / 3.0)):
        xm = x.clone().requires_grad_(True)
        mine = selective_scan(xm, B, C, dt, A, variant, rows=5)
        torch.testing.assert_close(mine.detach(), ref.detach(), rtol=1e-4, atol=1e-4)
        (got,) = torch.autograd.grad((mine * w).sum(), [xm])
        torch.testing.assert_close(got, factor * g_x, rtol=1e-4, atol=1e-4)


def test_mamba1_scan_matches_transformers_sequential_form():
    scan = importlib.import_module("transformers.models.mamba.modeling_mamba").mamba_selective_scan
    g = torch.Generator().manual_seed(4)
    b, T, D, N = 1, 15, 6, 4
    x, B, C = torch.randn(b, T, D, generator=g), torch.randn(b, T, N, generator=g), torch.randn(b, T, N, generator=g)
    dt, A = torch.rand(b, T, D, generator=g), -torch.rand(D, N, generator=g) - 0.1
    w = torch.randn(b, T, D, generator=g)
    xr = x.clone().requires_grad_(True)
    ref = scan(xr.transpose(1, 2), dt.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2)).transpose(1, 2)
    (g_x,) = torch.autograd.grad((ref * w).sum(), [xr])
    for variant, factor in (("cp", 1.0), ("attnlrp", 1.0 / 3.0)):
        xm = x.clone().requires_grad_(True)
        mine = selective_scan_diagonal(xm, B, C, dt, A, variant)
        torch.testing.assert_close(mine.detach(), ref.detach(), rtol=1e-4, atol=1e-4)
        (got,) = torch.autograd.grad((mine * w).sum(), [xm])
        torch.testing.assert_close(got, factor * g_x, rtol=1e-4, atol=1e-4)


def test_continuing_a_recurrent_cache_is_refused():
    model = tiny("qwen3_5_text")
    ids = torch.arange(3, 9).unsqueeze(0)
    with torch.no_grad():
        cache = model(ids, use_cache=True).past_key_values
    emb = model.get_input_embeddings()(torch.tensor([[11]])).detach().requires_grad_(True)
    with Composite(model, "cp"), pytest.raises(UnsupportedArchitecture, match="recurrent cache"):
        model(inputs_embeds=emb, cache=cache, use_cache=True)


@pytest.mark.parametrize("family", ["qwen3_next", "mamba2", "jamba"])
def test_block_by_block_backward_equals_the_whole_graph(family):
    """The long-context engine (one block's graph at a time) gives explain()'s relevance on hybrid stacks."""
    from conftest import tiny_ids

    from lm_eval_lrp.lrp import explain
    from lm_eval_lrp.lrp.layerwise import explain_layerwise

    model = tiny(family)
    ids = tiny_ids()
    for rule in ("attnlrp", "cp"):
        a = explain(model, ids, target=5, contrast=17, rule=rule)
        b = explain_layerwise(model, ids, target=5, contrast=17, rule=rule)
        scale = float(a.node_relevance.abs().max())
        assert float((a.node_relevance - b.node_relevance).abs().max()) <= 1e-5 * scale
        assert float((a.input_relevance - b.input_relevance).abs().max()) <= 1e-5 * scale
