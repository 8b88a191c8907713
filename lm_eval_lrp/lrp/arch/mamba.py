"""Mamba (``mamba``) and Falcon-Mamba (``falcon_mamba``: RMS norms on B, C and Δ): stacks of ``x + mixer(norm(x))``
blocks with Mamba-1 mixers (see :mod:`.ssm`); the "mid" node is the block input, as for :mod:`.mamba2`."""

from ..rules import NormIdentity
from ._gated import norm_rule
from .base import Architecture, AttentionParts
from .ssm import Mamba1Mixer


def _rules(variant: str) -> list:
    return [("norm", NormIdentity("rms")), ("mixer", Mamba1Mixer(variant))]


ARCHITECTURE = Architecture(
    name="mamba", model_types=("mamba", "falcon_mamba"), block_rules=_rules, final_rule=norm_rule("rms"),
    layers="backbone.layers", final_norm="backbone.norm_f", mid="norm",
    attention=AttentionParts(module="mixer", closed_form=False), containers=(), token_wise_mlp=False,
    notes="Mamba-1 selective scan: Δ, decays and the output gate constant; uniform rule on C·B·x",
)
