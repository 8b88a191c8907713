"""Qwen3-MoE: Qwen3 attention (per-head q/k norms) and Mixtral's sparse MoE block (see :mod:`.moe`)."""

from ._gated import decoder
from .base import AttentionParts
from .mixtral import MOE_FIELDS

ARCHITECTURE = decoder("qwen3_moe", ("qwen3_moe",), attention=AttentionParts(q_norm="q_norm", k_norm="k_norm"),
                       **MOE_FIELDS)
