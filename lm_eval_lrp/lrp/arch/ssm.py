"""Mamba-2 mixers (Mamba-2, Bamba, NemotronH, Granite-4 hybrid, Falcon-H1): the rule of the whole mixer.

The mixer: ``[z | xBC | dt] = W_in x``; ``[x | B | C] = SiLU(conv(xBC))``; ``Δ = clamp(softplus(dt + dt_bias))``;
``y = scan(x, B, C, Δ, A) + D ⊙ x`` (:func:`._recurrent.selective_scan`); ``out = W_out(w · norm(y · SiLU(z)))``.

Rules (derivation in ``docs/architectures-linear.md``): Δ, the decays exp(Δ·A) and the gate SiLU(z) constant; the
norm's 1/rms constant; SiLU after the convolution: identity rule; C·B·x: uniform rule (⅓ each), CP-LRP: B and C
constant; D ⊙ x linear. The mixer is conservative in both variants up to its additive constants (the convolution's
and the projections' biases, which absorb relevance: exposed to the self-check as leaves). The backward is computed
in torch (quadratic form, by blocks of rows) whatever kernel computed the forward, which stays the module's own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..rules import Rule
from ._recurrent import (causal_depthwise_conv, gated_rms_constant, identity_act, rms_constant, selective_scan,
                         selective_scan_diagonal)
from .base import UnsupportedArchitecture
from .gated_deltanet import register_mixer


class Mamba2Mixer(Rule):
    """The backward of a Mamba-2 mixer under the rules above (opaque). With ``collect`` the convolution bias becomes a
    leaf in ``leaves`` (the self-check reads the relevance it absorbs)."""

    opaque = True
    needs = ("in_proj", "conv1d", "norm", "out_proj", "A_log", "D", "dt_bias", "num_heads", "head_dim", "n_groups",
             "ssm_state_size", "intermediate_size", "conv_dim")

    def __init__(self, variant: str, gate_before_norm: bool = True):
        self.variant = variant
        self.gate_before_norm = gate_before_norm
        self.collect = False
        self.leaves: list = []

    def check(self, module: nn.Module) -> None:
        missing = [n for n in self.needs if not hasattr(module, n)]
        if missing:
            raise UnsupportedArchitecture(f"{type(module).__name__} has no {', '.join(missing)}")
        if getattr(module, "activation", "silu") != "silu":
            raise UnsupportedArchitecture(f"{type(module).__name__}: only a SiLU convolution activation is supported")

    def _const(self, t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        t = t.detach()
        if self.collect:
            t = t.clone().requires_grad_(True)
            self.leaves.append(t)
        return t

    def scan_inputs(self, m: nn.Module, x: torch.Tensor, attention_mask):
        """(gate z, x, B, C, raw dt) of the mixer on ``x``, under the rules up to the scan."""
        masked = isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2
        if masked:
            x = x * attention_mask[:, :, None].to(x.dtype)
        proj = m.in_proj(x)
        if proj.shape[-1] != m.intermediate_size + m.conv_dim + m.num_heads:
            raise UnsupportedArchitecture(f"{type(m).__name__}: in_proj has {proj.shape[-1]} features, not [z | xBC | dt]")
        gate, xBC, dt = proj.split([m.intermediate_size, m.conv_dim, m.num_heads], dim=-1)
        xBC = identity_act(causal_depthwise_conv(xBC, m.conv1d.weight, self._const(m.conv1d.bias)).float(), "silu")
        if masked:
            xBC = xBC * attention_mask[:, :, None].to(xBC.dtype)
        gs = m.n_groups * m.ssm_state_size
        xs, B, C = xBC.split([m.intermediate_size, gs, gs], dim=-1)
        return gate, xs, B, C, dt

    def surrogate(self, m: nn.Module, x: torch.Tensor, attention_mask) -> torch.Tensor:
        b, T, _ = x.shape
        gate, xs, B, C, dt = self.scan_inputs(m, x, attention_mask)
        H, P, G, N = m.num_heads, m.head_dim, m.n_groups, m.ssm_state_size
        xs = xs.reshape(b, T, H, P)
        B = B.reshape(b, T, G, N).repeat_interleave(H // G, dim=2)
        C = C.reshape(b, T, G, N).repeat_interleave(H // G, dim=2)
        lo, hi = getattr(m, "time_step_limit", (0.0, float("inf")))
        delta = F.softplus(dt.detach().float() + m.dt_bias.detach().float()).clamp(min=lo, max=hi)
        A = -m.A_log.detach().float().exp()
        y = selective_scan(xs, B, C, delta, A, self.variant) + m.D.detach().float()[:, None] * xs
        y = y.reshape(b, T, H * P)
        y = gated_rms_constant(y, gate, m.norm.weight, m.norm.variance_epsilon,
                               getattr(m.norm, "group_size", m.intermediate_size // G), before=self.gate_before_norm)
        return m.out_proj(y.to(x.dtype))

    def register(self, module):
        self.check(module)
        return register_mixer(module, "Mamba-2", self.surrogate)


def _norm_constant(norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """An optional RMSNorm on B or C (Jamba, Falcon-Mamba) with 1/rms constant; a weight only where it is a parameter
    (Falcon-Mamba's norms are weightless)."""
    if norm is None:
        return x
    out = rms_constant(x.float(), norm.variance_epsilon)
    weight = getattr(norm, "weight", None)
    return out * weight.detach().float() if isinstance(weight, nn.Parameter) else out


class Mamba1Mixer(Mamba2Mixer):
    """The backward of a Mamba-1 mixer (Mamba, Falcon-Mamba, Jamba) under the same rules: ``[x | z] = W_in x``;
    ``x = SiLU(conv(x))``; ``[dt | B | C] = W_x x`` (optionally RMS-normed); ``Δ = softplus(W_dt dt + b)`` constant;
    ``y = (scan(x, B, C, Δ, A) + D ⊙ x) · SiLU(z)`` with SiLU(z) constant."""

    needs = ("in_proj", "conv1d", "x_proj", "dt_proj", "out_proj", "A_log", "D", "intermediate_size",
             "ssm_state_size", "time_step_rank")

    def surrogate(self, m: nn.Module, x: torch.Tensor, attention_mask) -> torch.Tensor:
        masked = isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2
        if masked:
            x = x * attention_mask[:, :, None].to(x.dtype)
        xs, gate = m.in_proj(x).chunk(2, dim=-1)
        xs = identity_act(causal_depthwise_conv(xs, m.conv1d.weight, self._const(m.conv1d.bias)).float(), "silu")
        if masked:
            xs = xs * attention_mask[:, :, None].to(xs.dtype)
        dt, B, C = m.x_proj(xs.to(x.dtype)).split([m.time_step_rank, m.ssm_state_size, m.ssm_state_size], dim=-1)
        dt = dt.detach()
        if getattr(m, "dt_layernorm", None) is not None:
            dt = m.dt_layernorm(dt)
        delta = F.softplus(F.linear(dt.float(), m.dt_proj.weight.detach().float(), m.dt_proj.bias.detach().float()))
        B = _norm_constant(getattr(m, "b_layernorm", None), B)
        C = _norm_constant(getattr(m, "c_layernorm", None), C)
        A = -m.A_log.detach().float().exp()
        y = selective_scan_diagonal(xs, B, C, delta, A, self.variant) + m.D.detach().float() * xs
        y = y * F.silu(gate.detach().float())
        return m.out_proj(y.to(x.dtype))

    def register(self, module):
        self.check(module)
        return register_mixer(module, "Mamba", self.surrogate)
