"""Qwen3: Llama-like blocks plus per-head RMSNorm on q and k (q_norm/k_norm, identity rule like every norm)."""

from ._gated import gated_architecture

ARCHITECTURE = gated_architecture("qwen3", ("qwen3",))
