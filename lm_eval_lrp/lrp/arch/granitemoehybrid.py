"""Granite-4 hybrid (``granitemoehybrid``): Mamba-2 mixers (``mamba``, see :mod:`.ssm`) and attention layers, then
an optional sparse MoE (``block_sparse_moe``: routing weights constant, see :mod:`.moe`) plus a shared gated MLP
(``shared_mlp``: fused ``input_linear`` = [gate | up], ``output_linear``), with Granite's constant multipliers on the
embeddings, residual branches, attention scores and logits (all linear)."""

from ..rules import StopGradient
from ._gated import gated_mlp_rules
from ._hybrid import hybrid
from .moe import GatedExperts
from .ssm import Mamba2Mixer


def _mlp(variant: str) -> list:
    moe = [("block_sparse_moe.router", StopGradient()), ("block_sparse_moe.experts", GatedExperts(variant))]
    return moe + gated_mlp_rules(variant, act="shared_mlp.activation", down="shared_mlp.output_linear")


ARCHITECTURE = hybrid(
    "granitemoehybrid", ("granitemoehybrid",), mixer=("mamba", Mamba2Mixer),
    norms=("input_layernorm", "post_attention_layernorm"), mlp=_mlp,
    mlp_optional=("block_sparse_moe.router", "block_sparse_moe.experts"),
    containers=("block_sparse_moe", "shared_mlp"), branch_scale=lambda block: block.residual_multiplier,
)
