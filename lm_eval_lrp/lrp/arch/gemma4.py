"""Gemma 4 (text, ``gemma4_text``): Gemma's sandwich norms (plain weight, no offset), per-head q/k norms and a
weight-free v norm, attention scaling 1, a per-layer constant ``layer_scalar``, optionally a MoE branch beside the
dense MLP (block-level ``router`` and ``experts``, their own pre/post norms; routing weights constant, see
:mod:`.moe`).

Refused configurations (clear message): per-layer input embeddings (``hidden_size_per_layer_input``: a second
input path from the token ids into every block) and KV sharing across layers (``num_kv_shared_layers``: keys and
values reused by later blocks, which the block-by-block backward cannot follow). RoPE is applied per tensor here,
so graphs use the batch-packed backward.
"""

from ..rules import NormIdentity, StopGradient
from ._gated import decoder, gated_mlp_rules
from .base import AttentionParts
from .moe import GatedExperts


def _refuse(config) -> str | None:
    if getattr(config, "hidden_size_per_layer_input", 0):
        return ("per-layer input embeddings (hidden_size_per_layer_input > 0) are a second input path into every block; "
                "their rule is the gated-MLP one, but the block-by-block backward (long contexts, graphs) holds "
                "per-layer inputs constant, so part of the input relevance would be lost: not adapted yet")
    if getattr(config, "num_kv_shared_layers", 0):
        return ("KV sharing across layers (num_kv_shared_layers > 0) reuses keys and values of earlier blocks, which the "
                "block-by-block backward cannot follow: not adapted yet")
    return None


def _mlp(variant: str) -> list:
    moe = [("router", StopGradient()), ("experts", GatedExperts(variant)), ("*layernorm_[12]", NormIdentity("rms"))]
    return moe + gated_mlp_rules(variant)


ARCHITECTURE = decoder(
    "gemma4_text", ("gemma4_text",), mid="pre_feedforward_layernorm",
    attention=AttentionParts(q_norm="q_norm", k_norm="k_norm", post_norm="post_attention_layernorm",
                             closed_form=False),
    mlp=_mlp, optional=("router", "experts", "*layernorm_[12]"), refuse=_refuse,
)
