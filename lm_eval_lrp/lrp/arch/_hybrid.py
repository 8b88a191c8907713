"""The factory of hybrid decoders: blocks whose token mixer is either a recurrent mixer (linear attention, state-space
layer: one opaque rule, see :mod:`.gated_deltanet` and :mod:`.ssm`) or softmax attention, followed by an MLP.

Norm rules are given by exact name (a mixer's own gated norm is covered by the mixer's rule, not by ``*norm``).
"""

from __future__ import annotations

from ._gated import attention_rules, norm_rule
from ..rules import NormIdentity
from .base import Architecture, AttentionParts


def hybrid(name: str, model_types: tuple[str, ...], *, mixer: tuple[str, type], norms: tuple[str, ...], mlp,
           mlp_optional: tuple[str, ...] = (), mlp_groups: tuple = (), norm_offset: float = 0.0,
           attention: AttentionParts = AttentionParts(closed_form=False), containers: tuple[str, ...] = (),
           **fields) -> Architecture:
    """An :class:`Architecture` whose blocks hold ``mixer`` = (name, rule class) or ``attention`` (each block one of
    them), the given ``norms`` (RMSNorm, weight ``w + norm_offset``) and ``mlp(variant)`` rules."""
    where, rule = mixer

    def rules(variant: str) -> list:
        norm = NormIdentity("rms", weight_offset=norm_offset)
        return ([(n, norm) for n in norms] + [(where, rule(variant))] + attention_rules(variant, attention)
                + mlp(variant))

    qkv = tuple(f"{attention.module}.{p}" for p in attention.projections())
    return Architecture(
        name=name, model_types=model_types, block_rules=rules, final_rule=norm_rule("rms", norm_offset),
        attention=attention, containers=(attention.module,) + containers,
        optional=(where,) + qkv + mlp_optional, groups=((where, qkv[min(1, len(qkv) - 1)]),) + mlp_groups, **fields,
    )
