"""Phi-3 / Phi-4 (``phi3``): fused ``qkv_proj`` ([q | k | v] blocks) and fused ``gate_up_proj`` ([gate | up]).

The fused q|k|v output takes per-slice factors; the gated MLP's rules sit on its ``activation_fn`` and
``down_proj`` as in Llama (the split of ``gate_up_proj`` needs no rule of its own).
"""

from functools import partial

from ._gated import decoder, gated_mlp_rules
from .base import AttentionParts


def _sizes(attn) -> tuple[int, int]:
    return attn.config.num_attention_heads * attn.head_dim, attn.num_key_value_heads * attn.head_dim


def _split(attn, out):
    q, kv = _sizes(attn)
    return out[..., :q], out[..., q : q + kv], out[..., q + kv :]


def _layout(module, block) -> list:
    q, kv = _sizes(block.self_attn)
    return [("q", q), ("k", kv), ("v", kv)]


ARCHITECTURE = decoder(
    "phi3", ("phi3",),
    attention=AttentionParts(fused="qkv_proj", split=_split),
    mlp=partial(gated_mlp_rules, act="mlp.activation_fn"),
    layout=_layout,
)
