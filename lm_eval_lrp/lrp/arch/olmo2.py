"""OLMo2: norms *after* attention and MLP (post-norm inside the residual branch), q_norm/k_norm on projections."""

from . import Architecture
from ._gated import gated_decoder_rules

ARCHITECTURE = Architecture(
    name="olmo2",
    model_types=("olmo2",),
    rules=gated_decoder_rules,
    layers="model.layers",
    mid="mlp",  # no pre-MLP norm: the MLP reads the residual stream directly
    final_norm="model.norm",
)
