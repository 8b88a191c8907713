"""Rule pieces shared by the decoder families, and the factory of the common shape (Llama and kin).

AttnLRP: norms identity (1/σ constant); q, k ÷4 and v ÷2 (uniform rule on q·kᵀ and on P·V); activation identity
(f(x)/x); ÷2 into ``down_proj`` (uniform rule on act(gate)·up). CP-LRP: q, k and act(gate) are constants.
"""

from __future__ import annotations

from ..rules import ActivationIdentity, FusedQKV, GradScale, NormIdentity, StopGradient
from .base import Architecture, AttentionParts


def attention_rules(variant: str, parts: AttentionParts, layout=None) -> list:
    """q/k/v rules of one attention (``layout``: the fused projection's slot layout, see :class:`FusedQKV`)."""
    pre = parts.module + "."
    if parts.fused:
        f = (0.0, 0.0, 1.0) if variant == "cp" else (0.25, 0.25, 0.5)
        return [(pre + parts.fused, FusedQKV(*f, layout=layout))]
    if variant == "cp":
        return [(pre + parts.q, StopGradient()), (pre + parts.k, StopGradient())]
    return [(pre + parts.q, GradScale(0.25)), (pre + parts.k, GradScale(0.25)), (pre + parts.v, GradScale(0.5))]


def gated_mlp_rules(variant: str, act: str = "mlp.act_fn", down: str = "mlp.down_proj") -> list:
    """act(gate)·up followed by ``down``: identity on the activation and ÷2 into ``down`` (CP: the gate constant)."""
    if variant == "cp":
        return [(act, StopGradient())]
    return [(act, ActivationIdentity()), (down, GradScale(0.5, where="input"))]


def plain_mlp_rules(variant: str, act: str = "mlp.act") -> list:
    """act(W₁x)  followed by W₂: the identity rule on the activation in both variants (no product)."""
    return [(act, ActivationIdentity())]


def norm_rule(kind: str = "rms", offset: float = 0.0):
    rule = NormIdentity(kind, weight_offset=offset)
    return lambda variant: rule


def decoder(
    name: str,
    model_types: tuple[str, ...],
    *,
    mid: str = "post_attention_layernorm",
    norm_offset: float = 0.0,
    attention: AttentionParts = AttentionParts(),
    mlp=gated_mlp_rules,
    layout=None,
    **fields,
) -> Architecture:
    """An :class:`Architecture` of the common decoder shape: blocks under ``model.layers``, final ``model.norm``,
    every ``*norm`` module an RMSNorm (weight ``w + norm_offset``), the given attention parts and MLP rules."""

    def block_rules(variant: str) -> list:
        norm = NormIdentity("rms", weight_offset=norm_offset)
        return [("*norm", norm)] + attention_rules(variant, attention, layout) + mlp(variant)

    return Architecture(
        name=name,
        model_types=model_types,
        block_rules=block_rules,
        final_rule=norm_rule("rms", norm_offset),
        mid=mid,
        attention=attention,
        **fields,
    )


def gated_architecture(name: str, model_types: tuple[str, ...], mid: str = "post_attention_layernorm",
                       norm_weight_offset: float = 0.0, **fields) -> Architecture:
    """The Llama shape (kept under its old name): gated MLP, separate q/k/v."""
    return decoder(name, model_types, mid=mid, norm_offset=norm_weight_offset, **fields)


def layernorm_decoder(name: str, model_types: tuple[str, ...], *, norms: str, attention: AttentionParts, layout,
                      layers: str, final_norm: str, act: str = "mlp.act", **fields) -> Architecture:
    """The GPT shape: LayerNorms (with bias) matched by ``norms``, a fused q|k|v projection, a plain MLP."""

    def block_rules(variant: str) -> list:
        return [(norms, NormIdentity("layer"))] + attention_rules(variant, attention, layout) + plain_mlp_rules(variant, act)

    return Architecture(name=name, model_types=model_types, block_rules=block_rules, final_rule=norm_rule("layer"),
                        layers=layers, final_norm=final_norm, attention=attention,
                        containers=(attention.module, "mlp"), **fields)
