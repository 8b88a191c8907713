"""Mistral: Llama's block (sliding-window attention changes only the mask, not the rules)."""

from ._gated import gated_architecture

ARCHITECTURE = gated_architecture("mistral", ("mistral",))
