"""Qwen3-Next, Qwen3.5 and Qwen3.5-MoE: hybrid stacks of gated delta-net layers (``linear_attn``, see
:mod:`.gated_deltanet`) and softmax attention layers with an output gate (``q_proj`` gives q and a gate σ(·) on the
attention output: a constant). RMSNorm weights stored as offsets (1 + w); per-head q/k norms; MLP dense (Qwen3.5) or
a sparse MoE with a sigmoid-gated shared expert (routing weights constant, see :mod:`.moe`). Graphs use the
batch-packed backward (the attention output gate rules out the closed form).
"""

from ..rules import GradScale, NormIdentity, StopGradient
from ._gated import gated_mlp_rules, norm_rule
from .base import Architecture, AttentionParts
from .gated_deltanet import GatedDeltaNet, OutputGatedQuery
from .moe import MOE_GROUPS, MOE_OPTIONAL, moe_mlp_rules

_NORMS = ("input_layernorm", "post_attention_layernorm", "self_attn.q_norm", "self_attn.k_norm")
_ATTENTION = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")


def _mixers(variant: str) -> list:
    norms = [(n, NormIdentity("rms", weight_offset=1.0)) for n in _NORMS]
    if variant == "cp":
        attention = [("self_attn.q_proj", StopGradient()), ("self_attn.k_proj", StopGradient())]
    else:
        attention = [("self_attn.q_proj", OutputGatedQuery(0.25)), ("self_attn.k_proj", GradScale(0.25)),
                     ("self_attn.v_proj", GradScale(0.5))]
    return norms + [("linear_attn", GatedDeltaNet(variant))] + attention


def _hybrid(name: str, model_types: tuple[str, ...], moe: bool) -> Architecture:
    def rules(variant: str) -> list:
        if moe:
            return _mixers(variant) + moe_mlp_rules(variant, shared="mlp.shared_expert", shared_gate="mlp.shared_expert_gate")
        return _mixers(variant) + gated_mlp_rules(variant)

    optional = ("linear_attn", "self_attn.q_norm", "self_attn.k_norm") + _ATTENTION + (MOE_OPTIONAL if moe else ())
    return Architecture(
        name=name, model_types=model_types, block_rules=rules, final_rule=norm_rule("rms", 1.0),
        attention=AttentionParts(q_norm="q_norm", k_norm="k_norm", closed_form=False),
        containers=("self_attn", "linear_attn", "mlp", "mlp.shared_expert"),
        optional=optional, groups=(("linear_attn", "self_attn.k_proj"),) + (MOE_GROUPS if moe else ()),
        notes="gated delta-net: gates, decays and the state transition constant; uniform rule on q·k·v",
    )


QWEN3_NEXT = _hybrid("qwen3_next", ("qwen3_next",), moe=True)
QWEN3_5 = _hybrid("qwen3_5", ("qwen3_5_text",), moe=False)
QWEN3_5_MOE = _hybrid("qwen3_5_moe", ("qwen3_5_moe_text",), moe=True)
ARCHITECTURES = (QWEN3_NEXT, QWEN3_5, QWEN3_5_MOE)
