"""Granite: the Llama block with constant multipliers on embeddings, residual branches, attention scores and logits
(all linear). Granite-MoE: the same with a sparse MoE at ``block_sparse_moe`` (routing weights constant, see
:mod:`.moe`)."""

from ..rules import StopGradient
from ._gated import decoder
from .moe import GatedExperts

GRANITE = decoder("granite", ("granite",), branch_scale=lambda block: block.residual_multiplier)


def _granite_moe(variant: str) -> list:
    return [("block_sparse_moe.router", StopGradient()), ("block_sparse_moe.experts", GatedExperts(variant))]


GRANITE_MOE = decoder("granitemoe", ("granitemoe",), mlp=_granite_moe, containers=("self_attn", "block_sparse_moe"),
                      branch_scale=lambda block: block.residual_multiplier)
ARCHITECTURES = (GRANITE, GRANITE_MOE)
