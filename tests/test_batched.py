"""Batched attribution (explain_batch / explain_many) equals batch 1, keeps every item, survives out-of-memory."""

from __future__ import annotations

import pytest
import torch
from conftest import VOCAB, tiny_ids, tiny_model

from lm_eval_lrp.lrp import explain
from lm_eval_lrp.lrp import batched as batched_mod
from lm_eval_lrp.lrp.batched import ExplainError, explain_batch, explain_many
from lm_eval_lrp.lrp.memory import GraphBytes, auto_batch_size, is_oom
from lm_eval_lrp.lrp.target import Contrast
from arch_zoo import single_thread  # noqa: F401 - the autouse fixture: one intra-op thread for tiny models


def mixed_contrasts() -> list[Contrast]:
    """Mixed lengths, explained positions other than the last, a single-logit objective and an unresolved target."""
    spec = [(12, -1, 5, 17), (7, -1, 40, 3), (9, 4, 8, 9), (3, -1, 61, 22), (10, -1, None, None), (1, 0, 5, None)]
    return [Contrast(tuple(tiny_ids(n, seed=n + 1).tolist()), pos, tgt, con) for n, pos, tgt, con in spec]


def single(model, c: Contrast, **kw):
    return explain(model, list(c.ids), c.position, c.target, c.contrast, **kw)


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| relative to max |b|."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def assert_same(batch, ref, nodes: bool = True) -> None:
    assert batch.input_ids == ref.input_ids and batch.position == ref.position
    assert (batch.target_id, batch.contrast_id) == (ref.target_id, ref.contrast_id)
    assert batch.delta == pytest.approx(ref.delta, rel=1e-5, abs=1e-5)
    assert batch.target_logit == pytest.approx(ref.target_logit, rel=1e-5, abs=1e-5)
    assert (batch.contrast_logit is None) == (ref.contrast_logit is None)
    assert [i for i, _ in batch.topk] == [i for i, _ in ref.topk]
    assert batch.input_relevance.shape == ref.input_relevance.shape
    assert batch.input_relevance.dtype == torch.float32 and batch.input_relevance.device.type == "cpu"
    assert rel_diff(batch.input_relevance, ref.input_relevance) <= 1e-4
    assert batch.node_names == ref.node_names
    assert batch.node_relevance.shape == ref.node_relevance.shape
    if nodes:
        assert rel_diff(batch.node_relevance, ref.node_relevance) <= 1e-4


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("rule", ["attnlrp", "cp"])
@pytest.mark.parametrize("arch,attn", [("llama", "sdpa"), ("llama", "eager"), ("qwen2", "sdpa"), ("qwen3", "eager"),
                                       ("gpt2", "sdpa"), ("gpt2", "eager"), ("gemma3", "eager")])
def test_batch_equals_single(arch, attn, rule, padding_side):
    model = tiny_model(arch, attn=attn)
    contrasts = mixed_contrasts()
    out = explain_batch(model, contrasts, rule=rule, padding_side=padding_side)
    assert len(out) == len(contrasts)
    for c, e in zip(contrasts, out):
        assert_same(e, single(model, c, rule=rule))
        assert e.seconds["batch_size"] == len(contrasts)
    # padding never receives relevance, and nothing after the explained position does (causal)
    third = out[2]
    assert torch.count_nonzero(third.input_relevance[5:]) == 0


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batch_without_nodes(arch):
    model = tiny_model(arch)
    contrasts = mixed_contrasts()
    out = explain_batch(model, contrasts, nodes=False, padding_side="left")
    for c, e in zip(contrasts, out):
        ref = single(model, c, nodes=False)
        assert e.node_names == [] and e.node_relevance.shape == (0, len(c))
        assert_same(e, ref, nodes=False)


def test_batch_rejects_bad_tokens_and_nothing_to_contrast():
    model = tiny_model("llama")
    ids = tuple(tiny_ids(6).tolist())
    with pytest.raises(ValueError, match="outside the vocabulary"):
        explain_batch(model, [Contrast(ids, -1, 5, 6), Contrast(ids, -1, VOCAB + 3, 6)])
    with torch.no_grad():
        top = int(model(torch.tensor([ids])).logits[0, -1].argmax())
    with pytest.raises(ValueError, match="top token is the contrast"):
        explain_batch(model, [Contrast(ids, -1, None, top)])
    with pytest.raises(ValueError, match="padding_side"):
        explain_batch(model, [Contrast(ids, -1, 5, 6)], padding_side="middle")
    assert explain_batch(model, []) == []


@pytest.mark.parametrize("batch_size", [1, 2, 4, "auto"])
def test_many_keeps_order_and_equals_single(batch_size):
    model = tiny_model("qwen2")
    contrasts = mixed_contrasts() * 2
    seen = []
    out = explain_many(model, contrasts, batch_size=batch_size, on_result=lambda i, e: seen.append(i))
    assert sorted(seen) == list(range(len(contrasts)))
    for c, e in zip(contrasts, out):
        assert_same(e, single(model, c))


def test_many_isolates_a_bad_contrast():
    model = tiny_model("llama")
    contrasts = mixed_contrasts()
    contrasts[2] = Contrast(contrasts[2].ids, contrasts[2].position, VOCAB + 1, 3)  # outside the vocabulary
    out = explain_many(model, contrasts, batch_size=8)
    assert isinstance(out[2], ExplainError) and "outside the vocabulary" in out[2].error and out[2].index == 2
    assert not out[2].out_of_memory
    for i, (c, e) in enumerate(zip(contrasts, out)):
        if i != 2:
            assert_same(e, single(model, c))
    with pytest.raises(ValueError, match="batch_size"):
        explain_many(model, contrasts, batch_size=0)


def test_out_of_memory_halves_and_keeps_every_item(monkeypatch):
    """A batch over 2 rows runs out of memory (simulated): it is halved and retried; nothing is lost."""
    model = tiny_model("llama")
    contrasts = mixed_contrasts() + mixed_contrasts()[:3]
    real = batched_mod.explain_batch
    sizes = []

    def limited(model, contrasts, **kw):
        sizes.append(len(contrasts))
        if len(contrasts) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real(model, contrasts, **kw)

    monkeypatch.setattr(batched_mod, "explain_batch", limited)
    out = explain_many(model, contrasts, batch_size=8)
    assert sizes[0] == 8 and 4 in sizes and max(sizes[sizes.index(2):]) <= 2  # halved, later batches stay small
    assert all(not isinstance(e, ExplainError) for e in out)
    for c, e in zip(contrasts, out):
        assert_same(e, single(model, c))


def test_out_of_memory_alone_is_an_error_entry(monkeypatch):
    """The CPU allocator's error for one long contrast: that one becomes an out-of-memory entry, the rest are kept."""
    model = tiny_model("llama")
    contrasts = mixed_contrasts()
    real = batched_mod.explain_batch

    def limited(model, contrasts, **kw):
        if any(len(c) >= 12 for c in contrasts):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        return real(model, contrasts, **kw)

    monkeypatch.setattr(batched_mod, "explain_batch", limited)
    out = explain_many(model, contrasts, batch_size="auto")
    assert isinstance(out[0], ExplainError) and out[0].out_of_memory and out[0].advice
    assert all(not isinstance(e, ExplainError) for e in out[1:])
    for c, e in zip(contrasts[1:], out[1:]):
        assert_same(e, single(model, c))


def test_auto_batch_size_from_measured_graph(monkeypatch):
    model = tiny_model("llama")
    c = Contrast(tuple(tiny_ids(20).tolist()), -1, 5, 6)
    with GraphBytes(model) as meter:
        explain_batch(model, [c])
    per_token = meter.per_token(20)
    assert per_token and all(v > 0 for v in per_token.values())
    with GraphBytes(model) as meter4:
        explain_batch(model, [c] * 4)
    assert meter4.total == pytest.approx(4 * meter.total, rel=0.2)  # the graph grows with the batch
    cpu = torch.device("cpu")
    per_sequence = per_token[cpu] * 20
    monkeypatch.setattr("lm_eval_lrp.lrp.memory.free_bytes", lambda d: int(per_sequence * 2 * 2 * 5.5))
    assert auto_batch_size(model, per_token, 20, max_batch_size=64) == 5
    monkeypatch.setattr("lm_eval_lrp.lrp.memory.free_bytes", lambda d: 1 << 40)
    assert auto_batch_size(model, per_token, 20) == 8  # the CPU cap
    assert auto_batch_size(model, per_token, 20, max_batch_size=32) == 32
    monkeypatch.setattr("lm_eval_lrp.lrp.memory.free_bytes", lambda d: 10)
    assert auto_batch_size(model, per_token, 20) == 1
    assert auto_batch_size(model, None, 20) == 1


def test_is_oom():
    assert is_oom(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"))
    assert is_oom(MemoryError())
    assert not is_oom(RuntimeError("shape mismatch"))
    assert not is_oom(ValueError("out of memory"))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_half_precision_batch_matches_fp32(arch, dtype):
    """bf16/fp16: finite, the same Δℓ within half precision, relevance strongly correlated with fp32's."""
    ref_model = tiny_model(arch)
    model = tiny_model(arch, dtype=dtype)
    contrasts = [c for c in mixed_contrasts() if c.target is not None]
    for padding_side in ("right", "left"):
        out = explain_batch(model, contrasts, padding_side=padding_side)
        for c, e in zip(contrasts, out):
            ref = single(ref_model, c)
            assert e.finite and e.input_relevance.dtype == torch.float32
            with torch.no_grad():  # Δℓ is the half-precision model's own (its forward is unchanged)
                plain = model(torch.tensor([c.ids])).logits[0, c.position].float()
            own = float(plain[c.target] - (plain[c.contrast] if c.contrast is not None else 0))
            assert e.delta == pytest.approx(own, abs=0.02 * max(1.0, float(plain.abs().max())))
            assert e.delta == pytest.approx(ref.delta, abs=0.1 * max(1.0, abs(ref.delta)))
            if len(c) > 2:
                r = torch.corrcoef(torch.stack([e.input_relevance, ref.input_relevance]))[0, 1]
                assert r >= 0.98, (c, float(r))
