"""Llama: pre-norm blocks, RMSNorm, SiLU-gated MLP, separate q/k/v projections."""

from ._gated import gated_architecture

ARCHITECTURE = gated_architecture("llama", ("llama",))
