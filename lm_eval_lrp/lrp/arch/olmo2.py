"""OLMo2: norms *after* attention and MLP (post-norm inside the residual branch), q_norm/k_norm on projections."""

from ._gated import gated_architecture

# no pre-MLP norm: the MLP reads the residual stream after attention directly
ARCHITECTURE = gated_architecture("olmo2", ("olmo2",), mid="mlp")
