"""Layerwise (recomputing) contrastive LRP: same relevance as explain(), memory for long contexts."""

from __future__ import annotations

import resource
import time

import pytest
import torch
from conftest import ARCHS, tiny_ids, tiny_model

from lm_eval_lrp.lrp import explain
from lm_eval_lrp.lrp.layerwise import explain_layerwise, record_forward


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


CASES = [(a, r, "eager") for a in ARCHS for r in ("attnlrp", "cp")] + [(a, "attnlrp", "sdpa") for a in ("llama", "gemma3", "gpt2")]


@pytest.mark.parametrize("arch,rule,attn", CASES)
def test_layerwise_equals_explain(arch, rule, attn):
    """Block-by-block recomputation gives explain()'s input and node relevance, Δℓ and top-k."""
    model = tiny_model(arch, attn=attn)
    ids = tiny_ids(14)
    before = hook_count(model)
    for position in (-1, 5):
        ref = explain(model, ids, position, 5, 17, rule=rule)
        got = explain(model, ids, position, 5, 17, rule=rule, recompute=True)
        assert got.node_names == ref.node_names
        assert got.delta == pytest.approx(ref.delta, abs=1e-6)
        assert got.topk == ref.topk and got.position == ref.position
        assert torch.allclose(got.input_relevance, ref.input_relevance, atol=1e-6 * float(ref.input_relevance.abs().max()) + 1e-9)
        assert torch.allclose(got.node_relevance, ref.node_relevance, atol=1e-6 * float(ref.node_relevance.abs().max()) + 1e-9)
    assert hook_count(model) == before
    assert all(p.requires_grad for p in model.parameters())  # flags restored on exit


def test_layerwise_defaults_and_errors():
    model = tiny_model("llama")
    ids = tiny_ids()
    e = explain_layerwise(model, ids)  # target = the top token, single logit
    ref = explain(model, ids)
    assert e.target_id == ref.target_id and e.contrast_id is None
    assert torch.allclose(e.input_relevance, ref.input_relevance, atol=1e-6)
    assert explain_layerwise(model, ids, nodes=False, target=3, contrast=4).node_relevance.shape == (0, ids.numel())
    with pytest.raises(IndexError):
        explain_layerwise(model, ids, position=99)
    with pytest.raises(ValueError):
        explain_layerwise(model, ids, target=3, contrast=3)


def test_record_forward_keeps_block_inputs_and_kwargs():
    model = tiny_model("gemma3")  # per-layer rotary embeddings (local / global) and masks
    ids = tiny_ids()
    before = hook_count(model)
    rec = record_forward(model, ids)
    assert hook_count(model) == before
    assert len(rec.inputs) == len(rec.kwargs) == len(rec.args) == model.config.num_hidden_layers
    with torch.no_grad():
        hs = model(ids.unsqueeze(0), output_hidden_states=True).hidden_states
    for l, x in enumerate(rec.inputs):
        assert torch.equal(x, hs[l])
    assert not rec.final.requires_grad and "position_embeddings" in rec.kwargs[0]


@pytest.mark.slow
def test_smollm2_layerwise_backward_at_4096_tokens(request):
    """One contrastive layerwise backward at 4096 tokens on SmolLM2-135M (fp32): finite, bounded memory."""
    try:
        model, _ = request.getfixturevalue("smollm2")
    except pytest.FixtureLookupError:  # pragma: no cover - fixture owned by conftest
        from conftest import load_smollm2

        model, _ = load_smollm2()
    T = 4096
    ids = torch.randint(100, 40000, (T,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(ids[-64:].unsqueeze(0)).logits[0, -1]  # any two tokens will do for a backward
    target, contrast = int(logits.argmax()), int(logits.argmin())
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.time()
    e = explain(model, ids, -1, target, contrast, recompute=True)
    seconds = time.time() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    assert e.finite and e.input_relevance.shape == (T,) and e.node_relevance.shape == (61, T)
    assert float(e.input_relevance.abs().sum()) > 0
    assert peak_gib < 12, f"peak RSS {peak_gib:.1f} GiB"
    print(f"4096 tokens: {seconds:.1f} s, peak RSS {peak_gib:.2f} GiB (before {rss0 / 2**20:.2f} GiB)")
