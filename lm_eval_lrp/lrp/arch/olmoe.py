"""OLMoE: q/k norms over the whole projection and Mixtral's sparse MoE block (see :mod:`.moe`)."""

from ._gated import decoder
from .base import AttentionParts
from .mixtral import MOE_FIELDS

ARCHITECTURE = decoder("olmoe", ("olmoe",), attention=AttentionParts(q_norm="q_norm", k_norm="k_norm", qk_norm_flat=True),
                       **MOE_FIELDS)
