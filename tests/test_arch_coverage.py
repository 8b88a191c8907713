"""A model whose modules no longer fit its adapter, or whose type has none, is refused with the module named; never
explained wrongly in silence. The self-check's figures and its failure."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from arch_zoo import single_thread, tiny  # noqa: F401 (single_thread: a fixture)
from conftest import tiny_ids
from torch import nn

from lm_eval_lrp.lrp import UnsupportedArchitecture, architecture_of, explain
from lm_eval_lrp.lrp.arch import check_coverage
from lm_eval_lrp.lrp.selfcheck import SelfCheckFailed, self_check


def hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def refused(model, match: str) -> str:
    before = hooks(model)
    with pytest.raises(UnsupportedArchitecture, match=match) as info:
        explain(model, tiny_ids(), target=1, contrast=2)
    assert hooks(model) == before
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(UnsupportedArchitecture):
        self_check(model)
    return str(info.value)


def test_renamed_activation_module_is_refused():
    """As if transformers renamed ``mlp.act_fn``: the unruled SiLU is named, nothing is explained."""
    model = tiny("llama")
    for layer in model.model.layers:
        layer.mlp.activation = layer.mlp.act_fn
        del layer.mlp.act_fn
    message = refused(model, "model.layers.0.mlp.activation")
    assert "SiLUActivation" in message and "no LRP rule" in message


def test_unknown_activation_class_is_refused():
    class Swish2(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(2 * x)

    model = tiny("qwen3")
    for layer in model.model.layers:
        layer.mlp.act_fn = Swish2()
    assert "Swish2" in refused(model, "model.layers.0.mlp.act_fn")


def test_new_module_inside_a_block_is_refused():
    model = tiny("mistral")
    model.model.layers[1].self_attn.score_gate = nn.Tanh()
    assert "Tanh" in refused(model, "model.layers.1.self_attn.score_gate")


def test_renamed_router_is_refused():
    model = tiny("mixtral")
    for layer in model.model.layers:
        layer.mlp.router = layer.mlp.gate
        del layer.mlp.gate
    refused(model, "mlp.router")


def test_changed_expert_layout_is_refused_on_use():
    """Experts whose weights no longer follow the layout the rule recomputes: caught on the call itself."""
    model = tiny("olmoe")
    for layer in model.model.layers:
        layer.mlp.experts.is_concatenated = False  # claims [g0, u0, g1, u1, ...] while the forward chunks [g | u]
    with pytest.raises(UnsupportedArchitecture, match="do not reproduce"):
        explain(model, tiny_ids(), target=1, contrast=2)
    assert hooks(model) == 0


def test_wrong_norm_kind_is_refused():
    model = tiny("gpt_neox")
    arch = architecture_of(model)
    wrong = dataclasses.replace(arch, final_rule=lambda v: __import__("lm_eval_lrp.lrp.rules", fromlist=["x"]).NormIdentity("rms"))
    with pytest.raises(UnsupportedArchitecture, match="gpt_neox.final_layer_norm"):
        check_coverage(model, wrong)


def test_unknown_and_refused_model_types():
    import transformers as tf

    torch.manual_seed(0)
    phi = tf.AutoModelForCausalLM.from_config(tf.PhiConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100))
    message = refused(phi, "model_type='phi'")
    assert "olmo3" in message and "mixtral" in message and "lm_eval_lrp/lrp/arch/" in message
    falcon = tf.AutoModelForCausalLM.from_config(tf.FalconConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, vocab_size=100))
    refused(falcon, "model_type='falcon'")


def test_self_check_figures():
    figures = self_check(tiny("qwen2_moe"))
    assert figures["passed"] is True
    assert figures["model_type"] == "qwen2_moe" and figures["adapter"] == "qwen2_moe"
    assert figures["dtype"] == "float32" and figures["tolerance"] == 1e-3
    assert figures["conservation_rel_error"] < 1e-5
    assert figures["coverage"]["blocks"] == 2 and figures["coverage"]["modules_with_rules"] > 10
    assert 0 < figures["attnlrp_ratio"] < 2
    import json

    json.dumps(figures)  # JSON-ready for the results file


def test_self_check_fails_on_a_wrong_rule():
    """Gemma2 stores its norm weights as offsets (scale 1 + w): an adapter that forgets it is caught by conservation."""
    from lm_eval_lrp.lrp.arch._gated import decoder
    from lm_eval_lrp.lrp.arch.base import AttentionParts

    model = tiny("gemma2")
    wrong = decoder("gemma2-wrong", ("gemma2",), mid="pre_feedforward_layernorm", norm_offset=0.0,
                    attention=AttentionParts(post_norm="post_attention_layernorm", closed_form=False))
    with pytest.raises(SelfCheckFailed, match="conservation error") as info:
        self_check(model, arch=wrong)
    assert info.value.figures["passed"] is False
    assert info.value.figures["conservation_rel_error"] > 1e-3


def test_self_check_half_precision():
    figures = self_check(tiny("llama", dtype=torch.bfloat16))
    assert figures["dtype"] == "bfloat16" and figures["tolerance"] == 5e-2 and figures["passed"]


def test_refused_configurations_say_why():
    """Gemma 4 with per-layer input embeddings: refused with the reason."""
    import transformers as tf

    from arch_zoo import SHAPE

    torch.manual_seed(0)
    ple = tf.AutoModelForCausalLM.from_config(tf.Gemma4TextConfig(
        **{**SHAPE, "hidden_size_per_layer_input": 8, "num_kv_shared_layers": 0, "global_head_dim": 8}))
    assert "per-layer input embeddings" in refused(ple, "gemma4_text")
