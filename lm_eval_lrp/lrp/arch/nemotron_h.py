"""NemotronH (``nemotron_h``): a stack of ``x + mixer(norm(x))`` blocks whose ``mixer`` is, per layer, a Mamba-2
mixer (see :mod:`.ssm`), attention without positional encoding, a plain ReLU² MLP (``up_proj`` → ReLU² →
``down_proj``) or a sparse MoE of such MLPs with a shared expert (router ``mixer.gate``: routing weights constant,
see :mod:`.moe`; optional latent projections are linear).

The rule of ``mixer`` is chosen by the module's type when the block is bound (:class:`MixerByType`). ReLU² takes the
identity rule: backward ``g · relu(x)²/x = g · relu(x)``. As in :mod:`.mamba2`, a block has a single residual add,
so its "mid" node is the block input and ``mid -> out`` is the whole mixer (graphs: batch-packed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..rules import Container, GradScale, NormIdentity, Rule, StopGradient, is_recording, swap_backward
from ._gated import norm_rule
from .base import Architecture, AttentionParts, UnsupportedArchitecture
from .moe import GatedExperts
from .ssm import Mamba2Mixer

_RELU2 = ("ReLUSquaredActivation",)


class ReluSquaredIdentity(Rule):
    """Identity rule through ReLU²: backward ``g · relu(x)`` (= ``g · f(x)/x``), so R(x) = R(f(x))."""

    opaque = True

    def check(self, module: nn.Module) -> None:
        if type(module).__name__ not in _RELU2:
            raise UnsupportedArchitecture(f"{type(module).__name__} is not ReLU²")

    def register(self, module):
        def hook(mod, args, output):
            x = args[0] if args else None
            if not is_recording(x):
                return None
            return swap_backward(x, output, lambda g, r: (g.float() * r).to(g.dtype), F.relu(x.detach().float()))

        return [module.register_forward_hook(hook)]


class ReluSquaredExperts(GatedExperts):
    """NemotronH's experts: ``down(relu²(up h))`` per expert (no gate), routing weights constant."""

    def check(self, module: nn.Module) -> None:
        for name in ("up_proj", "down_proj", "act_fn"):
            if not hasattr(module, name):
                raise UnsupportedArchitecture(f"{type(module).__name__} has no {name}")
        if type(module.act_fn).__name__ not in _RELU2:
            raise UnsupportedArchitecture(f"{type(module).__name__}: only ReLU² experts are supported")

    def n_experts(self, module: nn.Module) -> int:
        return module.up_proj.shape[0]

    def expert(self, module: nn.Module, e: int, h: torch.Tensor) -> torch.Tensor:
        """Expert ``e`` on the rows ``h``: relu² under the identity rule (same value)."""
        a = F.linear(h, module.up_proj[e])
        act = F.relu(a.detach()) ** 2 + (a - a.detach()) * F.relu(a.detach())
        return F.linear(act, module.down_proj[e])


class MixerByType(Rule):
    """Binds to the rule of the block's ``mixer`` by its type: Mamba-2 (opaque rule) or a container."""

    def __init__(self, variant: str):
        self.variant = variant

    def bind(self, block: nn.Module) -> Rule:
        mixer = block.mixer
        return Mamba2Mixer(self.variant) if hasattr(mixer, "A_log") else Container()


def _rules(variant: str) -> list:
    attention = ([("mixer.q_proj", StopGradient()), ("mixer.k_proj", StopGradient())] if variant == "cp" else
                 [("mixer.q_proj", GradScale(0.25)), ("mixer.k_proj", GradScale(0.25)), ("mixer.v_proj", GradScale(0.5))])
    return [("norm", NormIdentity("rms")), ("mixer", MixerByType(variant))] + attention + [
        ("mixer.act_fn", ReluSquaredIdentity()),
        ("mixer.gate", StopGradient()),
        ("mixer.experts", ReluSquaredExperts(variant)),
        ("mixer.shared_experts.act_fn", ReluSquaredIdentity()),
    ]


_OPTIONAL = ("mixer.q_proj", "mixer.k_proj", "mixer.v_proj", "mixer.act_fn", "mixer.gate", "mixer.experts",
             "mixer.shared_experts.act_fn")

ARCHITECTURE = Architecture(
    name="nemotron_h", model_types=("nemotron_h",), block_rules=_rules, final_rule=norm_rule("rms"),
    layers="model.layers", final_norm="model.norm_f", mid="norm",
    attention=AttentionParts(module="mixer", rope=False, closed_form=False),
    containers=("mixer.shared_experts",), optional=_OPTIONAL, token_wise_mlp=False,
    notes="per-layer mixer: Mamba-2, attention, ReLU² MLP or MoE",
)
