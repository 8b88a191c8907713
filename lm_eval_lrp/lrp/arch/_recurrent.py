"""The operations of linear-attention and state-space mixers, written with the LRP rules in their backward.

Used by the mixer rules (:mod:`.gated_deltanet`, :mod:`.ssm`) to recompute a mixer's output for the backward only;
the forward value stays the module's own (checked against it on every call, see :func:`.moe.swap_in`). Derivations:
``docs/architectures-linear.md``.

* gates and decay factors (β, exp(g), exp(Δ·A), σ/SiLU output gates) are **constants** (detached), as CP-LRP does
  with the softmax;
* the normalisers of RMS and L2 norms are constants (identity rule);
* element-wise activations take the identity rule (backward ``f(x)/x``);
* the multiplicative products (q·k·v of the delta rule, C·B·x of the selective scan) are multilinear once the
  gates are constant; AttnLRP gives each of the N factors 1/N of the gradient (uniform rule), CP-LRP keeps only the
  value path (q, k / B, C constant).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..rules import ACTIVATION_RATIOS


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` in the forward; its gradient multiplied by ``factor`` in the backward."""
    if factor == 1.0:
        return x
    if factor == 0.0:
        return x.detach()
    return x.detach() + factor * (x - x.detach())


def identity_act(x: torch.Tensor, kind: str) -> torch.Tensor:
    """``f(x)`` (``kind`` in :data:`~lm_eval_lrp.lrp.rules.ACTIVATION_RATIOS`) with the identity rule: backward
    ``g · f(x)/x``, so that R(x) = R(f(x))."""
    ratio = ACTIVATION_RATIOS[kind](x.detach())
    value = x.detach() * ratio if kind != "silu" else F.silu(x.detach())
    return value + (x - x.detach()) * ratio


def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Causal depthwise convolution of ``x`` ``[B, T, C]`` with a ``[C, 1, K]`` kernel (linear: ordinary gradient)."""
    T, K = x.shape[1], weight.shape[-1]
    y = F.conv1d(x.transpose(1, 2), weight, bias, padding=K - 1, groups=x.shape[-1])
    return y[..., :T].transpose(1, 2)


def rms_constant(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``x / rms(x)`` with the normaliser constant (identity rule), over the last dimension."""
    return x * torch.rsqrt(x.detach().pow(2).mean(-1, keepdim=True) + eps)


def l2_constant(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``x / ‖x‖`` with the normaliser constant (identity rule), over the last dimension."""
    return x * torch.rsqrt(x.detach().pow(2).sum(-1, keepdim=True) + eps)


def gated_delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                     variant: str) -> torch.Tensor:
    """The gated delta rule, recurrent form, under the rules.  ``q, k [B, T, H, dk]`` (normalised and scaled),
    ``v [B, T, H, dv]``, ``g, beta [B, T, H]``; returns ``o [B, T, H, dv]``.

        S_t = exp(g_t) (I − β_t k_t k_tᵀ) S_{t−1} + β_t k_t v_tᵀ,     o_t = S_tᵀ q_t

    The transition exp(g_t)(I − β_t k_t k_tᵀ) is a decay: constant (its k detached). What is left is trilinear in
    (q, k of the write term, v): AttnLRP gives each a third of the gradient, CP-LRP keeps only v.
    """
    third = 1.0 / 3.0 if variant != "cp" else 0.0
    q_r = scale_grad(q.float(), third)
    k_w = scale_grad(k.float(), third)
    v_r = scale_grad(v.float(), third if variant != "cp" else 1.0)
    k_e = k.detach().float()
    decay = g.detach().float().exp()
    beta = beta.detach().float()
    B, T, H, dk = q.shape
    state = torch.zeros(B, H, dk, v.shape[-1], dtype=torch.float32, device=q.device)
    out = []
    for t in range(T):
        state = state * decay[:, t, :, None, None]
        b_t = beta[:, t, :, None]
        erase = k_e[:, t, :, :, None] * (b_t * (state * k_e[:, t, :, :, None]).sum(-2))[:, :, None, :]
        write = k_w[:, t, :, :, None] * (b_t * v_r[:, t])[:, :, None, :]
        state = state - erase + write
        out.append((state * q_r[:, t, :, :, None]).sum(-2))
    return torch.stack(out, dim=1)


def selective_scan(x: torch.Tensor, B: torch.Tensor, C: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                   variant: str, rows: int = 64) -> torch.Tensor:
    """Mamba-2's scan (state-space duality), in its quadratic ("attention") form, under the rules.
    ``x [b, T, H, P]``, ``B, C [b, T, H, N]`` (groups already repeated), ``dt [b, T, H]`` (after softplus), ``A [H]``:

        h_t = exp(Δ_t A) h_{t−1} + Δ_t B_t x_tᵀ,   y_t = C_tᵀ h_t
            = Σ_{s≤t} (C_t·B_s) · exp(Σ_{r=s+1..t} Δ_r A) · Δ_s · x_s

    Δ and the decays are constants; what is left is trilinear in (C, B, x): AttnLRP gives each a third of the
    gradient, CP-LRP keeps only x. Computed ``rows`` query positions at a time (memory ``rows × T × H``)."""
    third = 1.0 / 3.0 if variant != "cp" else 0.0
    x_r = scale_grad(x.float(), third if variant != "cp" else 1.0)
    B_r, C_r = scale_grad(B.float(), third), scale_grad(C.float(), third)
    dt = dt.detach().float()
    cum = torch.cumsum(dt * A.detach().float(), dim=1)  # [b, T, H]
    T = x.shape[1]
    src = x_r * dt[..., None]  # Δ_s x_s (Δ constant)
    out = []
    for r0 in range(0, T, rows):
        r1 = min(T, r0 + rows)
        t = torch.arange(r0, r1, device=x.device)[:, None]
        s = torch.arange(T, device=x.device)[None, :]
        causal = (s <= t)[None, :, :, None]  # [1, c, T, 1]
        diff = cum[:, r0:r1, None, :] - cum[:, None, :, :]  # [b, c, T, H]
        decay = torch.where(causal, diff, torch.full_like(diff, -float("inf"))).exp()
        scores = torch.einsum("bthn,bshn->btsh", C_r[:, r0:r1], B_r) * decay
        out.append(torch.einsum("btsh,bshp->bthp", scores, src))
    return torch.cat(out, dim=1)


def gated_rms_constant(y: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor, eps: float, group: int,
                       before: bool = True) -> torch.Tensor:
    """Mamba-2's gated RMSNorm with the gate SiLU(z) and the normaliser constant (identity rule):
    ``w · norm(y · SiLU(z))`` (``before``: gate before the norm) or ``w · norm(y) · SiLU(z)``, over groups of
    ``group`` features."""
    gate = F.silu(gate.detach().float())
    if before:
        y = y * gate
    shape = y.shape
    grouped = y.reshape(*shape[:-1], shape[-1] // group, group)
    out = (grouped * torch.rsqrt(grouped.detach().pow(2).mean(-1, keepdim=True) + eps)).reshape(shape)
    out = out * weight.detach().float()
    return out if before else out * gate


def selective_scan_diagonal(x: torch.Tensor, B: torch.Tensor, C: torch.Tensor, dt: torch.Tensor, A: torch.Tensor,
                            variant: str) -> torch.Tensor:
    """Mamba-1's selective scan, recurrent form, under the rules. ``x, dt [b, T, D]``, ``B, C [b, T, N]``,
    ``A [D, N]``:

        h_t = exp(Δ_t ⊙ A) ⊙ h_{t−1} + (Δ_t ⊙ x_t) B_tᵀ,   y_t = h_t C_t

    Δ and the decays constant; trilinear in (C, B, x): AttnLRP ⅓ each, CP-LRP keeps only x."""
    third = 1.0 / 3.0 if variant != "cp" else 0.0
    x_r = scale_grad(x.float(), third if variant != "cp" else 1.0)
    B_r, C_r = scale_grad(B.float(), third), scale_grad(C.float(), third)
    dt = dt.detach().float()
    decay = torch.exp(dt[..., None] * A.detach().float())  # [b, T, D, N]
    src = dt * x_r
    state = torch.zeros(x.shape[0], x.shape[2], A.shape[-1], dtype=torch.float32, device=x.device)
    out = []
    for t in range(x.shape[1]):
        state = decay[:, t] * state + src[:, t, :, None] * B_r[:, t, None, :]
        out.append((state * C_r[:, t, None, :]).sum(-1))
    return torch.stack(out, dim=1)
