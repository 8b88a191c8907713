"""Qwen3: Llama-like blocks plus per-head RMSNorm on q and k (q_norm/k_norm, identity rule like every norm)."""

from ._gated import decoder
from .base import AttentionParts

ARCHITECTURE = decoder("qwen3", ("qwen3",), attention=AttentionParts(q_norm="q_norm", k_norm="k_norm"))
