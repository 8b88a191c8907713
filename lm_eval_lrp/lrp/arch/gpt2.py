"""GPT-2: LayerNorm with bias, fused q|k|v projection (Conv1D ``c_attn``), plain GELU-tanh MLP, learned positions."""

from ._gated import attention_rules, norm_rule, plain_mlp_rules
from .base import Architecture, AttentionParts
from ..rules import NormIdentity

ATTENTION = AttentionParts(
    module="attn", fused="c_attn", o="c_proj", pre_norm="ln_1", rope=False,
    split=lambda attn, out: out.split(attn.split_size, dim=-1),
)


def _layout(module, block) -> list:
    d = module.nf // 3
    return [("q", d), ("k", d), ("v", d)]


def rules(variant: str) -> list:
    return [("ln_*", NormIdentity("layer"))] + attention_rules(variant, ATTENTION, _layout) + plain_mlp_rules(variant)


ARCHITECTURE = Architecture(
    name="gpt2",
    model_types=("gpt2",),
    block_rules=rules,
    final_rule=norm_rule("layer"),
    layers="transformer.h",
    mid="ln_2",
    final_norm="transformer.ln_f",
    attention=ATTENTION,
    containers=("attn", "mlp"),
)
