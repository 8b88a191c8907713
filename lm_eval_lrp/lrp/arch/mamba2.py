"""Mamba-2 (``mamba2``): a stack of ``x + mixer(norm(x))`` blocks, no attention and no MLP (mixer: :mod:`.ssm`).

A block has a single residual add, so its "mid" node is the block input itself (``norm``'s input): the ``x -> mid``
transition is the identity and ``mid -> out`` is the whole mixer, which mixes tokens (graphs: batch-packed).
"""

from ..rules import NormIdentity
from ._gated import norm_rule
from .base import Architecture, AttentionParts
from .ssm import Mamba2Mixer


def _rules(variant: str) -> list:
    return [("norm", NormIdentity("rms")), ("mixer", Mamba2Mixer(variant))]


ARCHITECTURE = Architecture(
    name="mamba2", model_types=("mamba2",), block_rules=_rules, final_rule=norm_rule("rms"),
    layers="backbone.layers", final_norm="backbone.norm_f", mid="norm",
    attention=AttentionParts(module="mixer", closed_form=False), containers=(), token_wise_mlp=False,
    notes="Mamba-2 scan: Δ, decays and the output gate constant; uniform rule on C·B·x",
)
