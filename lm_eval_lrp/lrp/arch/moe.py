"""Mixture of experts: output = Σ_k w_k(x) · E_k(x) over the top-k experts of each token (plus shared experts).

**Decision: routing weights are constants** (both variants). The router (softmax / sigmoid, top-k, renormalisation)
and a shared expert's sigmoid gate are detached: w_k(x) multiplies E_k(x) as a fixed coefficient, so all of the
relevance of the MoE output flows into the experts, which makes the MoE block exactly conservative under CP-LRP
(and as conservative as a dense MLP under AttnLRP). The alternative (the uniform rule on w_k·E_k) would send half of
it into the router, whose softmax/top-k is not conservative, and a top-k selection has no meaningful gradient.

Inside each expert: the gated-MLP rules (identity on act, uniform rule on act(gate)·up; CP-LRP: act(gate) constant).
The experts of transformers 5 are one module with 3-D weights computed by ``F.linear`` (no sub-module to hook), so
:class:`GatedExperts` recomputes the experts' output with the rules written out and uses it for the backward only:
the forward value stays the module's own, and the recomputation is checked against it on every call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..rules import ACTIVATION_RATIOS, Rule, StopGradient, activation_kind, gated_product, is_recording
from ._gated import gated_mlp_rules
from .base import UnsupportedArchitecture


def _default_gate(module: nn.Module) -> bool:
    try:
        from transformers.integrations.moe import _default_apply_gate
    except ImportError:  # pragma: no cover
        return True
    return getattr(type(module), "_apply_gate", _default_apply_gate) is _default_apply_gate


def swap_in(module: nn.Module, output: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """The module's own ``output`` in the forward, the ``surrogate``'s backward; refused if they differ by more than
    rounding (1e-3 of the output's scale in fp32, 5e-2 in half precision: a changed layout is off by O(1))."""
    value = output.detach()
    tol = 1e-3 if value.dtype in (torch.float32, torch.float64) else 5e-2
    scale = float(value.abs().max()) + 1e-6
    if float((surrogate.detach().float() - value.float()).abs().max()) > tol * scale:
        raise UnsupportedArchitecture(
            f"{type(module).__name__}: the experts recomputed for the LRP backward do not reproduce the module's output "
            "(its layout changed); this model cannot be explained")
    return value + (surrogate - surrogate.detach())


class GatedExperts(Rule):
    """Backward of a transformers experts module under the gated-MLP rules, routing weights constant."""

    opaque = True

    def __init__(self, variant: str):
        self.variant = variant

    def check(self, module: nn.Module) -> None:
        """Refuse layouts this rule does not reproduce (custom gates, biases, post-expert norms)."""
        for flag in ("has_bias", "has_post_expert_norm"):
            if getattr(module, flag, False):
                raise UnsupportedArchitecture(f"{type(module).__name__}: experts with {flag} are not supported")
        if not getattr(module, "has_gate", True) or not _default_gate(module):
            raise UnsupportedArchitecture(f"{type(module).__name__}: a non-default expert gate is not supported")
        for name in ("gate_up_proj", "down_proj", "act_fn"):
            if not hasattr(module, name):
                raise UnsupportedArchitecture(f"{type(module).__name__} has no {name}")
        activation_kind(module.act_fn)

    def surrogate(self, module: nn.Module, x: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Σ_k w_k · E_k(x) with the rules' backward (w constant), same value as the module's forward."""
        out = torch.zeros_like(x)
        weights = weights.detach()
        for e in torch.unique(index).tolist():
            if not 0 <= e < self.n_experts(module):
                continue
            tok, pos = torch.where(index == e)
            y = self.expert(module, e, x[tok])
            out.index_add_(0, tok, (y * weights[tok, pos, None]).to(out.dtype))
        return out

    def n_experts(self, module: nn.Module) -> int:
        return module.gate_up_proj.shape[0]

    def expert(self, module: nn.Module, e: int, h: torch.Tensor) -> torch.Tensor:
        """Expert ``e`` on the rows ``h`` under the gated-MLP rules."""
        ratio = ACTIVATION_RATIOS[activation_kind(module.act_fn)]
        transposed = getattr(module, "is_transposed", False)
        w_gu, w_down = module.gate_up_proj[e], module.down_proj[e]
        gate_up = h @ w_gu if transposed else F.linear(h, w_gu)
        concatenated = getattr(module, "is_concatenated", True)
        gate, up = gate_up.chunk(2, dim=-1) if concatenated else (gate_up[..., ::2], gate_up[..., 1::2])
        prod = gated_product(gate, up, module.act_fn(gate.detach()), ratio, self.variant)
        return prod @ w_down if transposed else F.linear(prod, w_down)

    def register(self, module):
        self.check(module)

        def hook(mod, args, kwargs, output):
            params = list(args) + [kwargs[k] for k in ("top_k_index", "top_k_weights", "router_indices", "routing_weights")
                                   if k in kwargs]
            x = params[0]
            if not is_recording(x) or not isinstance(output, torch.Tensor):
                return None
            return swap_in(mod, output, self.surrogate(mod, x, params[1], params[2]))

        return [module.register_forward_hook(hook, with_kwargs=True)]


class BatchedExperts(GatedExperts):
    """Llama-4's experts: every expert on its own slice of pre-weighted inputs (``[E·S, d]``, routing weights applied
    to the input by the MoE block: constants), one ``bmm`` each for gate|up and down."""

    def check(self, module: nn.Module) -> None:
        for name in ("gate_up_proj", "down_proj", "act_fn"):
            if not hasattr(module, name):
                raise UnsupportedArchitecture(f"{type(module).__name__} has no {name}")
        activation_kind(module.act_fn)

    def register(self, module):
        self.check(module)
        ratio = ACTIVATION_RATIOS[activation_kind(module.act_fn)]

        def hook(mod, args, output):
            x = args[0]
            if not is_recording(x) or not isinstance(output, torch.Tensor):
                return None
            gate, up = torch.bmm(x.view(mod.gate_up_proj.shape[0], -1, x.shape[-1]), mod.gate_up_proj).chunk(2, dim=-1)
            prod = gated_product(gate, up, mod.act_fn(gate.detach()), ratio, self.variant)
            return swap_in(mod, output, torch.bmm(prod, mod.down_proj).view(-1, x.shape[-1]))

        return [module.register_forward_hook(hook)]


def moe_mlp_rules(variant: str, *, shared: str | None = "mlp.shared_expert", shared_gate: str | None = None) -> list:
    """Rules of an MoE block at ``mlp`` (router ``mlp.gate``, experts ``mlp.experts``), its shared expert (a gated
    MLP at ``shared``, optionally scaled by ``sigmoid(shared_gate(x))``), and of dense MLP blocks in other layers."""
    out = [("mlp.gate", StopGradient()), ("mlp.experts", GatedExperts(variant))]
    if shared_gate:
        out.append((shared_gate, StopGradient()))
    if shared:
        out += gated_mlp_rules(variant, act=f"{shared}.act_fn", down=f"{shared}.down_proj")
    return out + gated_mlp_rules(variant)


#: block patterns that need not match in every block: MoE and dense MLP layers may alternate
MOE_OPTIONAL = ("mlp.gate", "mlp.experts", "mlp.act_fn", "mlp.down_proj", "mlp.shared_expert.act_fn",
                "mlp.shared_expert.down_proj", "mlp.shared_expert_gate", "mlp.shared_experts.act_fn",
                "mlp.shared_experts.down_proj")
MOE_GROUPS = (("mlp.experts", "mlp.act_fn"),)
