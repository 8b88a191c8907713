"""OLMo2 and OLMo3: norms *after* attention and MLP (inside the residual branch), q/k norms over the whole projection.

OLMo3 adds sliding-window layers (a mask change only): the same rules.
"""

from ._gated import decoder
from .base import AttentionParts

# no pre-MLP norm: the MLP reads the residual stream after attention directly
ARCHITECTURE = decoder(
    "olmo2", ("olmo2", "olmo3"), mid="mlp",
    attention=AttentionParts(pre_norm=None, post_norm="post_attention_layernorm", q_norm="q_norm", k_norm="k_norm",
                             qk_norm_flat=True),
)
