"""Llama and the families with its exact block: pre-norm, RMSNorm, SiLU-gated MLP, separate q/k/v projections.

* ``smollm3``: NoPE layers (no RoPE in some blocks: a change of q/k values only, not of the rules);
* ``granite``: constant multipliers on embeddings, residual branches, attention scores and logits (linear);
* ``helium``, ``ministral``: the Llama block.
"""

from ._gated import decoder

ARCHITECTURE = decoder("llama", ("llama", "smollm3", "granite", "helium", "ministral"))
