"""Batched and half-precision attribution on the real embedded model (SmolLM2-135M-Instruct, CPU)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from lm_eval_lrp.lrp import explain
from lm_eval_lrp.lrp.batched import ExplainError, explain_many
from lm_eval_lrp.lrp.target import Contrast

pytestmark = pytest.mark.slow

# ARC-style questions with the gold answer and a wrong one; the contrast is wrong's first token vs gold's.
ARC_STYLE = [
    ("Which gas do plants take in from the air to make their food?", "carbon dioxide", "oxygen"),
    ("Which of these is a source of light energy?", "Sun", "Moon"),
    ("What is the boiling point of water at sea level?", "100 degrees Celsius", "50 degrees Celsius"),
    ("Which organ pumps blood through the human body?", "heart", "lungs"),
    ("A student pushes a box across the floor. Which force slows the box down?", "friction", "magnetism"),
    ("Which tool is best for measuring the mass of a rock?", "balance", "thermometer"),
]


@pytest.fixture(scope="module")
def failures(smollm2):
    model, tokenizer = smollm2
    out = []
    for question, gold, wrong in ARC_STYLE:  # as the harness builds a multiple-choice failure
        g = tokenizer.encode(f"Question: {question}\nAnswer: {gold}")
        w = tokenizer.encode(f"Question: {question}\nAnswer: {wrong}")
        k = next(i for i, (a, b) in enumerate(zip(w, g)) if a != b)
        out.append(Contrast(tuple(w[:k]), -1, w[k], g[k]))
    return out


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1])


def test_batched_equals_single_on_smollm2(smollm2, failures):
    model, _ = smollm2
    batch = explain_many(model, failures, batch_size=4)
    for c, e in zip(failures, batch):
        ref = explain(model, list(c.ids), c.position, c.target, c.contrast)
        assert e.delta == pytest.approx(ref.delta, abs=1e-4)
        assert float((e.input_relevance - ref.input_relevance).abs().max()) <= 1e-4 * float(ref.input_relevance.abs().max())
        assert float((e.node_relevance - ref.node_relevance).abs().max()) <= 1e-4 * float(ref.node_relevance.abs().max())


@pytest.mark.parametrize("rule", ["attnlrp", "cp"])
def test_bf16_relevance_correlates_with_fp32(smollm2, failures, rule):
    """bfloat16 on the CPU: the same failures' input relevance correlates with float32's (Pearson ≥ 0.98 each)."""
    model, _ = smollm2
    half = copy.deepcopy(model).to(torch.bfloat16)
    ref = explain_many(model, failures, batch_size=4, rule=rule, nodes=False)
    out = explain_many(half, failures, batch_size=4, rule=rule, nodes=False)
    assert not any(isinstance(e, ExplainError) for e in ref + out)
    rs = [pearson(e.input_relevance, r.input_relevance) for e, r in zip(out, ref)]
    print(f"\nSmolLM2 {rule} bf16 vs fp32, input relevance Pearson per failure: " + ", ".join(f"{r:.4f}" for r in rs))
    for c, e in zip(failures, out):
        assert e.finite and e.input_relevance.dtype == torch.float32
        with torch.no_grad():
            logits = half(torch.tensor([c.ids])).logits[0, -1].float()
        own = float(logits[c.target] - logits[c.contrast])
        single = explain(half, list(c.ids), c.position, c.target, c.contrast, rule=rule, nodes=False)
        assert single.delta == pytest.approx(own, abs=0.13)  # unpadded: the bf16 model's own Δℓ (measured: equal)
        # a padded batch in bf16 (other matmul shapes, another summation order) moves logits by a few rounding steps
        # at the row's scale (measured up to 3 steps of 0.125 at |logit| 27 with transformers 5.25)
        ulp = 2.0 ** (math.floor(math.log2(max(float(logits.abs().max()), 1.0))) - 7)  # bf16: 8 significant bits
        assert e.delta == pytest.approx(own, abs=4 * ulp)
    assert min(rs) >= 0.98, rs

