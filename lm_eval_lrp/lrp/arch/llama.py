"""Llama and the families with its exact block: pre-norm, RMSNorm, SiLU-gated MLP, separate q/k/v projections.

* ``smollm3``: NoPE layers (no RoPE in some blocks: a change of q/k values only, not of the rules);
* ``helium``, ``ministral``, ``seed_oss``: the Llama block (Seed-OSS: q/k/v biases);
* ``exaone``, ``internlm3``, ``iquestcoder``: configurations that transformers loads into ``LlamaForCausalLM``.
"""

from ._gated import decoder

ARCHITECTURE = decoder("llama", ("llama", "smollm3", "helium", "ministral", "seed_oss", "exaone", "internlm3",
                                        "iquestcoder"))
