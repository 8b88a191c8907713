"""Llama and the families with its exact block: pre-norm, RMSNorm, SiLU-gated MLP, separate q/k/v projections.

* ``smollm3``: NoPE layers (no RoPE in some blocks: a change of q/k values only, not of the rules);
* ``helium``, ``ministral``, ``seed_oss``: the Llama block (Seed-OSS: q/k/v biases).
"""

from ..rules import StopGradient
from ._gated import decoder
from .moe import GatedExperts

ARCHITECTURE = decoder("llama", ("llama", "smollm3", "helium", "ministral", "seed_oss"))

# Granite: constant multipliers on embeddings, residual branches, attention scores and logits (all linear);
# Granite-MoE: the same with a sparse MoE at ``block_sparse_moe`` (routing weights constant, see .moe)
GRANITE = decoder("granite", ("granite",), branch_scale=lambda block: block.residual_multiplier)


def _granite_moe(variant: str) -> list:
    return [("block_sparse_moe.router", StopGradient()), ("block_sparse_moe.experts", GatedExperts(variant))]


GRANITE_MOE = decoder("granitemoe", ("granitemoe",), mlp=_granite_moe, containers=("self_attn", "block_sparse_moe"),
                      branch_scale=lambda block: block.residual_multiplier)
ARCHITECTURES = (ARCHITECTURE, GRANITE, GRANITE_MOE)
