"""Mistral: pre-norm blocks, RMSNorm, SiLU-gated MLP, separate q/k/v projections."""

from . import Architecture
from ._gated import gated_decoder_rules

ARCHITECTURE = Architecture(
    name="mistral",
    model_types=("mistral",),
    rules=gated_decoder_rules,
    layers="model.layers",
    mid="post_attention_layernorm",
    final_norm="model.norm",
)
