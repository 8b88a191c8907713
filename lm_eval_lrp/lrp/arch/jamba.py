"""Jamba (``jamba``): Mamba-1 mixers (``mamba``, RMS norms on Δ, B, C; see :mod:`.ssm`) and attention layers without
positional encoding, each followed by a SiLU-gated MLP or a sparse MoE at ``feed_forward`` (router
``feed_forward.router``: routing weights constant, see :mod:`.moe`)."""

from ..rules import StopGradient
from ._gated import gated_mlp_rules
from ._hybrid import hybrid
from .base import AttentionParts
from .moe import GatedExperts
from .ssm import Mamba1Mixer


def _mlp(variant: str) -> list:
    moe = [("feed_forward.router", StopGradient()), ("feed_forward.experts", GatedExperts(variant))]
    return moe + gated_mlp_rules(variant, act="feed_forward.act_fn", down="feed_forward.down_proj")


ARCHITECTURE = hybrid(
    "jamba", ("jamba",), mixer=("mamba", Mamba1Mixer), norms=("input_layernorm", "pre_ff_layernorm"), mlp=_mlp,
    mlp_optional=("feed_forward.router", "feed_forward.experts", "feed_forward.act_fn", "feed_forward.down_proj"),
    mlp_groups=(("feed_forward.experts", "feed_forward.act_fn"),),
    attention=AttentionParts(rope=False, closed_form=False), containers=("feed_forward",),
    mid="pre_ff_layernorm", final_norm="model.final_layernorm",
)
