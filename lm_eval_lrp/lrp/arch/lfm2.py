"""LFM2 (``lfm2``) and LFM2-MoE (``lfm2_moe``: a sparse MoE at ``feed_forward`` in the later layers, experts with
``F.silu``; routing weights constant, see :mod:`.moe`): gated short-convolution layers and attention layers (per-head q/k norms, ``out_proj``), each
followed by a SiLU-gated MLP computed with ``F.silu`` (no activation module: the whole MLP gets one rule).

Short convolution: ``[B | C | x] = W_in h``, ``y = W_out(C ⊙ conv(B ⊙ x))`` with a depthwise causal convolution.
Once the convolution (linear) is fixed, y is trilinear in (C, B, x), each a linear projection of the input, as in a
state-space scan with no decay: AttnLRP gives each a third of the gradient (uniform rule), CP-LRP holds B and C
constant (docs/architectures-linear.md). The mixer is conservative in both variants.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..rules import ACTIVATION_RATIOS, Container, Rule, gated_product
from ._gated import attention_rules, norm_rule
from ._recurrent import causal_depthwise_conv, scale_grad
from .base import Architecture, AttentionParts, UnsupportedArchitecture
from .gated_deltanet import register_mixer
from .moe import GatedExperts, swap_in
from ..rules import NormIdentity, StopGradient, is_recording


class ShortConv(Rule):
    """The backward of LFM2's gated short convolution under the rules above (opaque)."""

    opaque = True

    def __init__(self, variant: str):
        self.variant = variant

    def check(self, module: nn.Module) -> None:
        for name in ("in_proj", "conv", "out_proj"):
            if not hasattr(module, name):
                raise UnsupportedArchitecture(f"{type(module).__name__} has no {name}")
        if module.conv.bias is not None:
            raise UnsupportedArchitecture(f"{type(module).__name__}: a convolution bias is not supported")

    def surrogate(self, m: nn.Module, h: torch.Tensor, attention_mask) -> torch.Tensor:
        if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:
            h = h * attention_mask[:, :, None].to(h.dtype)
        B, C, x = m.in_proj(h).chunk(3, dim=-1)
        third = 1.0 / 3.0 if self.variant != "cp" else 0.0
        B, C = scale_grad(B, third), scale_grad(C, third)
        x = scale_grad(x, third if self.variant != "cp" else 1.0)
        y = C * causal_depthwise_conv(B * x, m.conv.weight, None)
        return m.out_proj(y)

    def register(self, module):
        self.check(module)
        return register_mixer(module, "short-convolution", self.surrogate)


class SiluGatedMLP(Rule):
    """``w2(SiLU(w1 h) ⊙ w3 h)`` written with ``F.silu``: identity rule on SiLU and uniform rule on the product
    (CP-LRP: SiLU(w1 h) constant); the forward value stays the module's own."""

    opaque = True

    def __init__(self, variant: str):
        self.variant = variant

    def check(self, module: nn.Module) -> None:
        for name in ("w1", "w2", "w3"):
            if not isinstance(getattr(module, name, None), nn.Linear):
                raise UnsupportedArchitecture(f"{type(module).__name__} has no linear {name}")

    def register(self, module):
        self.check(module)
        ratio = ACTIVATION_RATIOS["silu"]

        def hook(mod, args, output):
            h = args[0]
            if not is_recording(h) or not isinstance(output, torch.Tensor):
                return None
            gate, up = mod.w1(h), mod.w3(h)
            return swap_in(mod, output, mod.w2(gated_product(gate, up, F.silu(gate.detach()), ratio, self.variant)))

        return [module.register_forward_hook(hook)]


class SiluFunctionExperts(GatedExperts):
    """Experts whose activation is the function ``F.silu`` (LFM2-MoE), not a module: the gated-MLP expert rule."""

    def check(self, module: nn.Module) -> None:
        for name in ("gate_up_proj", "down_proj"):
            if not hasattr(module, name):
                raise UnsupportedArchitecture(f"{type(module).__name__} has no {name}")
        if getattr(module, "act_fn", None) is not F.silu:
            raise UnsupportedArchitecture(f"{type(module).__name__}: only F.silu experts are supported")

    def expert(self, module, e, h):
        gate, up = F.linear(h, module.gate_up_proj[e]).chunk(2, dim=-1)
        prod = gated_product(gate, up, F.silu(gate.detach()), ACTIVATION_RATIOS["silu"], self.variant)
        return F.linear(prod, module.down_proj[e])


class FeedForwardByType(Rule):
    """Binds to :class:`SiluGatedMLP` for a dense ``feed_forward``, else to a container (MoE)."""

    def __init__(self, variant: str):
        self.variant = variant

    def bind(self, block: nn.Module) -> Rule:
        return SiluGatedMLP(self.variant) if hasattr(block.feed_forward, "w1") else Container()


_ATTENTION = AttentionParts(o="out_proj", pre_norm="operator_norm", q_norm="q_layernorm", k_norm="k_layernorm",
                            closed_form=False)
_NORMS = ("operator_norm", "ffn_norm", "self_attn.q_layernorm", "self_attn.k_layernorm")


def _rules(variant: str) -> list:
    norm = NormIdentity("rms")
    return ([(n, norm) for n in _NORMS] + [("conv", ShortConv(variant))] + attention_rules(variant, _ATTENTION)
            + [("feed_forward", FeedForwardByType(variant)), ("feed_forward.gate", StopGradient()),
               ("feed_forward.experts", SiluFunctionExperts(variant))])


ARCHITECTURE = Architecture(
    name="lfm2", model_types=("lfm2", "lfm2_moe"), block_rules=_rules, final_rule=norm_rule("rms"),
    mid="ffn_norm", final_norm="model.embedding_norm", attention=_ATTENTION, containers=("self_attn",),
    optional=("conv", "self_attn.q_layernorm", "self_attn.k_layernorm", "self_attn.q_proj", "self_attn.k_proj",
              "self_attn.v_proj", "feed_forward.gate", "feed_forward.experts"),
    groups=(("conv", "self_attn.k_proj"),),
    notes="gated short convolution: uniform rule on C·B·x",
)
