"""Gemma (1): Llama's block with RMSNorm weight (1 + w), a GELU-tanh gated MLP and scaled embeddings."""

from ._gated import decoder

ARCHITECTURE = decoder("gemma", ("gemma",), norm_offset=1.0)
