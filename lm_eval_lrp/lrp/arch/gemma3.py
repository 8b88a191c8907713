"""Gemma3 (text): sandwich norms with weight (1 + w), GELU-tanh gated MLP, q/k norms, scaled embeddings.

The embedding scale sqrt(d) lives inside the embedding module, so input relevance is taken on its (scaled) output.
"""

from ._gated import gated_architecture

ARCHITECTURE = gated_architecture("gemma3", ("gemma3_text",), mid="pre_feedforward_layernorm", norm_weight_offset=1.0)
