"""GPT-NeoX (Pythia): LayerNorm with bias, fused ``query_key_value`` laid out ``[q | k | v]`` per head, partial
RoPE, plain GELU MLP, and (``use_parallel_residual``, Pythia's default) attention and MLP reading the same input.

With the parallel residual the "mid" node is the block input itself (nothing lies between attention and MLP): its
relevance equals the block input's, and the whole block is the ``mid -> out`` transition, which is then not
token-wise (graphs must not take the diagonal MLP shortcut: ``Architecture.mlp_is_token_wise``).
"""

from ._gated import layernorm_decoder
from .base import AttentionParts


def _split(attn, out):
    B, T = out.shape[:2]
    q, k, v = out.view(B, T, -1, 3 * attn.head_size).chunk(3, dim=-1)
    return (t.reshape(B, T, -1) for t in (q, k, v))


def _layout(module, block) -> list:
    hd = block.attention.head_size
    return [(slot, hd) for _ in range(module.out_features // (3 * hd)) for slot in "qkv"]


ARCHITECTURE = layernorm_decoder(
    "gpt_neox", ("gpt_neox",), norms="*layernorm", layout=_layout, layers="gpt_neox.layers",
    final_norm="gpt_neox.final_layer_norm",
    attention=AttentionParts(module="attention", fused="query_key_value", o="dense", split=_split),
    token_wise_mlp=lambda config: not getattr(config, "use_parallel_residual", False),
)
