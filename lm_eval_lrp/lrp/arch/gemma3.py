"""Gemma3 (text): sandwich norms with weight (1 + w), GELU-tanh gated MLP, q/k norms, scaled embeddings.

The embedding scale sqrt(d) lives inside the embedding module, so input relevance is taken on its (scaled) output.
"""

from functools import partial

from . import Architecture
from ._gated import gated_decoder_rules

ARCHITECTURE = Architecture(
    name="gemma3",
    model_types=("gemma3_text",),
    rules=partial(gated_decoder_rules, norm_weight_offset=1.0),
    layers="model.layers",
    mid="pre_feedforward_layernorm",
    final_norm="model.norm",
)
