"""gpt-oss: Llama-like attention with q/k/v/o biases and per-head attention sinks, MoE at ``mlp`` (router
``mlp.router``: top-k logits then softmax: constant, see :mod:`.moe`) whose experts use a clamped SwiGLU:

    glu = min(g, L) · σ(α · min(g, L)),   y = (clamp(u, −L, L) + 1) · glu,   with biases on both projections.

Rules derived from the same principles: the element-wise chains on g and on u take the identity rule (backward
f(x)/x of the whole chain), the product takes the uniform rule (CP-LRP: glu constant), and the constant 1 and the
biases are additive constants that absorb relevance (accounted for by the self-check). Sinks only enlarge the
softmax denominator (a constant logit). Graphs use the batch-packed backward.
"""

import torch

from ..rules import StopGradient
from ._gated import decoder
from .base import AttentionParts, UnsupportedArchitecture
from .moe import GatedExperts


def _ratio(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    safe = torch.where(x == 0, torch.ones_like(x), x)
    return torch.where(x == 0, torch.zeros_like(x), value / safe)


class ClampedSwiGLUExperts(GatedExperts):
    """gpt-oss experts under the rules; with ``collect`` the additive constants become leaves (``self.leaves``) so
    that the relevance they absorb can be read (the self-check)."""

    def __init__(self, variant: str):
        super().__init__(variant)
        self.collect = False
        self.leaves: list = []

    def check(self, module) -> None:
        for name in ("gate_up_proj", "gate_up_proj_bias", "down_proj", "down_proj_bias", "alpha", "limit"):
            if not hasattr(module, name):
                raise UnsupportedArchitecture(f"{type(module).__name__} has no {name}")

    def _const(self, t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        if self.collect:
            t = t.clone().requires_grad_(True)
            self.leaves.append(t)
        return t

    def expert(self, module, e, h):
        gate_up = h @ module.gate_up_proj[e] + self._const(module.gate_up_proj_bias[e])
        gate, up = gate_up[..., ::2], gate_up[..., 1::2]
        g, u = gate.detach(), up.detach()
        g_c = g.clamp(min=None, max=module.limit)
        glu_value = g_c * torch.sigmoid(g_c * module.alpha)
        glu = glu_value + (gate - g) * _ratio(glu_value, g)  # identity rule through clamp and SiLU-α
        u_c = u.clamp(min=-module.limit, max=module.limit)
        up_c = u_c + (up - u) * _ratio(u_c, u)  # identity rule through the clamp
        up1 = up_c + self._const(torch.ones_like(u))
        prod = glu_value * up1 if self.variant == "cp" else 0.5 * (glu * up1.detach() + glu.detach() * up1)
        return prod @ module.down_proj[e] + self._const(module.down_proj_bias[e])


def _mlp(variant: str) -> list:
    return [("mlp.router", StopGradient()), ("mlp.experts", ClampedSwiGLUExperts(variant))]


ARCHITECTURE = decoder(
    "gpt_oss", ("gpt_oss",), attention=AttentionParts(closed_form=False), mlp=_mlp,
)
