"""Bamba (``bamba``): Mamba-2 mixers (``mamba``, see :mod:`.ssm`) and Llama attention layers, each followed by a
SiLU-gated MLP (``feed_forward``); plain RMSNorms (``input_layernorm``, ``pre_ff_layernorm``)."""

from functools import partial

from ._gated import gated_mlp_rules
from ._hybrid import hybrid
from .ssm import Mamba2Mixer

ARCHITECTURE = hybrid(
    "bamba", ("bamba",), mixer=("mamba", Mamba2Mixer), norms=("input_layernorm", "pre_ff_layernorm"),
    mlp=partial(gated_mlp_rules, act="feed_forward.act_fn", down="feed_forward.down_proj"),
    containers=("feed_forward",), mid="pre_ff_layernorm", final_norm="model.final_layernorm",
)
