"""Mixtral: Llama attention and a sparse MoE block (router ``mlp.gate``, experts ``mlp.experts``); see :mod:`.moe`."""

from functools import partial

from ._gated import decoder
from .moe import MOE_GROUPS, MOE_OPTIONAL, moe_mlp_rules

MOE_FIELDS = dict(mlp=partial(moe_mlp_rules, shared=None), optional=MOE_OPTIONAL, groups=MOE_GROUPS)

ARCHITECTURE = decoder("mixtral", ("mixtral",), **MOE_FIELDS)
