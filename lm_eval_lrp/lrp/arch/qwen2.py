"""Qwen2: Llama's block with biases on q/k/v (the biases absorb relevance)."""

from ._gated import gated_architecture

ARCHITECTURE = gated_architecture("qwen2", ("qwen2",))
