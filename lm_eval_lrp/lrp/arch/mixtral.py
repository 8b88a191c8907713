"""Mixtral, Qwen3-MoE, OLMoE: Llama-like attention (Qwen3-MoE: per-head q/k norms; OLMoE: q/k norms over the
whole projection) and a sparse MoE block (router ``mlp.gate``, experts ``mlp.experts``); see :mod:`.moe`."""

from functools import partial

from ._gated import decoder
from .base import AttentionParts
from .moe import MOE_GROUPS, MOE_OPTIONAL, moe_mlp_rules

_FIELDS = dict(mlp=partial(moe_mlp_rules, shared=None), optional=MOE_OPTIONAL, groups=MOE_GROUPS)

MIXTRAL = decoder("mixtral", ("mixtral",), **_FIELDS)
QWEN3_MOE = decoder("qwen3_moe", ("qwen3_moe",), attention=AttentionParts(q_norm="q_norm", k_norm="k_norm"), **_FIELDS)
OLMOE = decoder("olmoe", ("olmoe",), attention=AttentionParts(q_norm="q_norm", k_norm="k_norm", qk_norm_flat=True),
                **_FIELDS)
ARCHITECTURES = (MIXTRAL, QWEN3_MOE, OLMOE)
