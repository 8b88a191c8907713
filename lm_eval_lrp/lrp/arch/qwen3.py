"""Qwen3: Llama-like blocks plus per-head RMSNorm on q and k (q_norm/k_norm, identity rule like every norm)."""

from . import Architecture
from ._gated import gated_decoder_rules

ARCHITECTURE = Architecture(
    name="qwen3",
    model_types=("qwen3",),
    rules=gated_decoder_rules,
    layers="model.layers",
    mid="post_attention_layernorm",
    final_norm="model.norm",
)
