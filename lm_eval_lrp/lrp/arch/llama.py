"""Llama and the families with its exact block: pre-norm, RMSNorm, SiLU-gated MLP, separate q/k/v projections.

* ``smollm3``: NoPE layers (no RoPE in some blocks: a change of q/k values only, not of the rules);
* ``helium``, ``ministral``: the Llama block.
"""

from ._gated import decoder

ARCHITECTURE = decoder("llama", ("llama", "smollm3", "helium", "ministral"))

# Granite: constant multipliers on embeddings, residual branches, attention scores and logits (all linear)
GRANITE = decoder("granite", ("granite",), branch_scale=lambda block: block.residual_multiplier)
ARCHITECTURES = (ARCHITECTURE, GRANITE)
