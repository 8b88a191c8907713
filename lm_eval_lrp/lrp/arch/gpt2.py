"""GPT-2: LayerNorm with bias, fused q|k|v projection (Conv1D ``c_attn``), plain GELU-tanh MLP, learned positions."""

from ._gated import layernorm_decoder
from .base import AttentionParts


def _layout(module, block) -> list:
    d = module.nf // 3
    return [("q", d), ("k", d), ("v", d)]


ARCHITECTURE = layernorm_decoder(
    "gpt2", ("gpt2",), norms="ln_*", layout=_layout, layers="transformer.h", final_norm="transformer.ln_f", mid="ln_2",
    attention=AttentionParts(module="attn", fused="c_attn", o="c_proj", pre_norm="ln_1", rope=False,
                             split=lambda attn, out: out.split(attn.split_size, dim=-1)),
)
