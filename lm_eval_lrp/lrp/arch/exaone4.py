"""EXAONE 4: OLMo2's post-norm block (norms inside the residual branch, no pre-MLP norm) with per-head q/k norms."""

from ._gated import decoder
from .base import AttentionParts

ARCHITECTURE = decoder(
    "exaone4", ("exaone4",), mid="mlp",
    attention=AttentionParts(pre_norm=None, post_norm="post_attention_layernorm", q_norm="q_norm", k_norm="k_norm"),
)
