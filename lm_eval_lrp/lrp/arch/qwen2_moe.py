"""Qwen2-MoE: Qwen2 attention (q/k/v biases), sparse MoE with a shared expert scaled by sigmoid(shared_expert_gate(x))
(a routing weight: constant, see :mod:`.moe`), dense MLP in ``mlp_only_layers``."""

from functools import partial

from ._gated import decoder
from .moe import MOE_GROUPS, MOE_OPTIONAL, moe_mlp_rules

ARCHITECTURE = decoder(
    "qwen2_moe", ("qwen2_moe",),
    mlp=partial(moe_mlp_rules, shared="mlp.shared_expert", shared_gate="mlp.shared_expert_gate"),
    optional=MOE_OPTIONAL, groups=MOE_GROUPS, containers=("self_attn", "mlp", "mlp.shared_expert"),
)
