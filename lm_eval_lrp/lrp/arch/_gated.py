"""The rule map shared by decoder blocks with a gated MLP and separate q/k/v projections (Llama and kin)."""

from __future__ import annotations

from ..rules import ActivationIdentity, GradScale, NormIdentity, StopGradient


def gated_decoder_rules(variant: str, norm_weight_offset: float = 0.0) -> list:
    norm = NormIdentity("rms", weight_offset=norm_weight_offset)
    common = [("*norm", norm), ("*layernorm", norm)]
    if variant == "cp":
        return common + [
            ("*.self_attn.q_proj", StopGradient()),
            ("*.self_attn.k_proj", StopGradient()),
            ("*.mlp.act_fn", StopGradient()),
        ]
    return common + [
        ("*.self_attn.q_proj", GradScale(0.25)),
        ("*.self_attn.k_proj", GradScale(0.25)),
        ("*.self_attn.v_proj", GradScale(0.5)),
        ("*.mlp.act_fn", ActivationIdentity()),
        ("*.mlp.down_proj", GradScale(0.5, where="input")),
    ]


def gated_architecture(name: str, model_types: tuple[str, ...], mid: str = "post_attention_layernorm",
                       norm_weight_offset: float = 0.0):
    """An :class:`Architecture` of the gated-decoder family (blocks under ``model.layers``, final ``model.norm``)."""
    from functools import partial

    from . import Architecture

    return Architecture(
        name=name,
        model_types=model_types,
        rules=partial(gated_decoder_rules, norm_weight_offset=norm_weight_offset),
        layers="model.layers",
        mid=mid,
        final_norm="model.norm",
    )
