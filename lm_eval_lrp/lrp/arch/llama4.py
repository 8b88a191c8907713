"""Llama-4 (text, ``llama4_text``): MoE blocks at ``feed_forward`` (router ``feed_forward.router``: sigmoid of the
top-k logits, applied to the experts' *inputs*; every expert a gated MLP; a shared expert), dense gated MLPs in the
other layers, weight-free L2 norm on q and k, NoPE layers with a position-dependent temperature on q (a constant).

Routing weights constant (:mod:`.moe`). RoPE is applied with complex frequencies, which the closed-form attention
edges do not reproduce: graphs use the batch-packed backward.
"""

from ._gated import decoder, gated_mlp_rules
from .base import AttentionParts
from ..rules import StopGradient
from .moe import BatchedExperts


def _mlp(variant: str) -> list:
    ff = "feed_forward"
    return ([(f"{ff}.router", StopGradient()), (f"{ff}.experts", BatchedExperts(variant))]
            + gated_mlp_rules(variant, act=f"{ff}.shared_expert.activation_fn", down=f"{ff}.shared_expert.down_proj")
            + gated_mlp_rules(variant, act=f"{ff}.activation_fn", down=f"{ff}.down_proj"))


ARCHITECTURE = decoder(
    "llama4_text", ("llama4_text",),
    attention=AttentionParts(closed_form=False),
    mlp=_mlp,
    containers=("self_attn", "feed_forward", "feed_forward.shared_expert"),
    optional=("feed_forward.router", "feed_forward.experts", "feed_forward.shared_expert.activation_fn",
              "feed_forward.shared_expert.down_proj", "feed_forward.activation_fn", "feed_forward.down_proj",
              "self_attn.qk_norm"),
    groups=(("feed_forward.experts", "feed_forward.activation_fn"),),
)
