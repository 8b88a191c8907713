"""Gemma3 (text): sandwich norms with weight (1 + w), GELU-tanh gated MLP, per-head q/k norms, scaled embeddings.

The embedding scale sqrt(d) lives inside the embedding module, so input relevance is taken on its (scaled) output.
"""

from ._gated import decoder
from .base import AttentionParts

ARCHITECTURE = decoder(
    "gemma3", ("gemma3_text",), mid="pre_feedforward_layernorm", norm_offset=1.0,
    attention=AttentionParts(q_norm="q_norm", k_norm="k_norm", post_norm="post_attention_layernorm"),
)
