"""Gated delta-net (Qwen3-Next, Qwen3.5, Qwen3.5-MoE): the rule of the whole linear-attention mixer.

The mixer: ``[q | k | v] = SiLU(conv(W_qkv x))``, ``z = W_z x``, ``β = σ(W_b x)``, ``g = −exp(A_log)·softplus(W_a x +
dt_bias)``; q, k L2-normalised (q also by 1/√d_k); ``o`` = the gated delta rule (:func:`._recurrent.gated_delta_rule`);
``y = W_out(RMSNorm(o) · w · SiLU(z))``.

Rules (derivation in ``docs/architectures-linear.md``): β, exp(g), the state transition and the output gate SiLU(z)
are constants; 1/rms and 1/‖·‖ constant; SiLU after the convolution: identity rule; q·k·v: uniform rule (⅓ each),
CP-LRP: q and k constant. Under these rules the mixer is conservative in both variants (its output is multilinear in
q, k, v, each linear in x). The backward is recomputed in the torch recurrent form whatever kernel computed the
forward (fla / causal-conv1d on GPU): the forward value stays the module's own and is checked against the
recomputation on every call.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ..rules import FusedQKV, Rule, is_recording
from ._recurrent import causal_depthwise_conv, gated_delta_rule, identity_act, l2_constant, rms_constant
from .base import UnsupportedArchitecture
from .moe import swap_in

log = logging.getLogger("lm_eval_lrp")
_SAID: set[str] = set()


def say_once(key: str, message: str) -> None:
    """Log ``message`` the first time ``key`` is seen in this process."""
    if key not in _SAID:
        _SAID.add(key)
        log.warning(message)


def _projections(m: nn.Module, x: torch.Tensor):
    """(mixed q|k|v before the convolution, z, b, a) of either layout (Qwen3-Next's fused qkvz/ba, Qwen3.5's four)."""
    B, T, _ = x.shape
    if hasattr(m, "in_proj_qkvz"):
        nk, nv, dk, dv = m.num_k_heads, m.num_v_heads, m.head_k_dim, m.head_v_dim
        r = nv // nk
        qkvz = m.in_proj_qkvz(x).view(B, T, nk, 2 * dk + 2 * r * dv)
        ba = m.in_proj_ba(x).view(B, T, nk, 2 * r)
        q, k, v, z = torch.split(qkvz, [dk, dk, r * dv, r * dv], dim=3)
        b, a = torch.split(ba, [r, r], dim=3)
        mixed = torch.cat([t.reshape(B, T, -1) for t in (q, k, v)], dim=-1)
        return mixed, z.reshape(B, T, nv, dv), b.reshape(B, T, nv), a.reshape(B, T, nv)
    z = m.in_proj_z(x).reshape(B, T, -1, m.head_v_dim)
    return m.in_proj_qkv(x), z, m.in_proj_b(x), m.in_proj_a(x)


def continues_cache(module: nn.Module, cache) -> bool:
    """Whether this call starts from a state (recurrent or convolution) left in ``cache`` by an earlier call (not
    recomputed here)."""
    if cache is None:
        return False
    getters = [getattr(cache, n, None) for n in ("get_recurrent_state", "get_conv_state")]
    if not any(getters):
        return bool(getattr(cache, "has_previous_state", False))
    return any(get is not None and get(module.layer_idx, state_idx=0) is not None for get in getters)


class GatedDeltaNet(Rule):
    """The backward of a gated delta-net mixer under the rules above (opaque: its sub-modules need no rules)."""

    opaque = True
    needs = ("conv1d", "norm", "out_proj", "A_log", "dt_bias", "num_k_heads", "num_v_heads", "head_k_dim", "head_v_dim")

    def __init__(self, variant: str):
        self.variant = variant

    def check(self, module: nn.Module) -> None:
        missing = [n for n in self.needs if not hasattr(module, n)]
        if not (hasattr(module, "in_proj_qkvz") or hasattr(module, "in_proj_qkv")):
            missing.append("in_proj_qkvz | in_proj_qkv")
        if missing:
            raise UnsupportedArchitecture(f"{type(module).__name__} has no {', '.join(missing)}")
        if getattr(module, "activation", "silu") != "silu" or getattr(module.norm, "activation", "silu") != "silu":
            raise UnsupportedArchitecture(f"{type(module).__name__}: only SiLU activations are supported")

    def surrogate(self, m: nn.Module, x: torch.Tensor, attention_mask) -> torch.Tensor:
        if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2:
            x = x * attention_mask[:, :, None].to(x.dtype)
        B, T, _ = x.shape
        mixed, z, b, a = _projections(m, x)
        conv = causal_depthwise_conv(mixed, m.conv1d.weight, m.conv1d.bias)
        mixed = identity_act(conv.float(), "silu")
        q, k, v = torch.split(mixed, [m.key_dim, m.key_dim, m.value_dim], dim=-1)
        q = q.reshape(B, T, -1, m.head_k_dim)
        k = k.reshape(B, T, -1, m.head_k_dim)
        v = v.reshape(B, T, -1, m.head_v_dim)
        if m.num_v_heads != m.num_k_heads:
            r = m.num_v_heads // m.num_k_heads
            q, k = q.repeat_interleave(r, dim=2), k.repeat_interleave(r, dim=2)
        q = l2_constant(q) / (m.head_k_dim ** 0.5)
        k = l2_constant(k)
        beta = b.detach().float().sigmoid()
        g = -m.A_log.detach().float().exp() * F.softplus(a.detach().float() + m.dt_bias.detach().float())
        o = gated_delta_rule(q, k, v, g, beta, self.variant)
        gate = F.silu(z.detach().float())  # the output gate: a constant
        eps = m.norm.variance_epsilon
        o = rms_constant(o, eps) * m.norm.weight.detach().float() * gate
        return m.out_proj(o.reshape(B, T, -1).to(x.dtype))

    def register(self, module):
        self.check(module)
        return register_mixer(module, "gated delta-net", self.surrogate)


def register_mixer(module: nn.Module, what: str, surrogate) -> list:
    """Hooks that give a mixer ``surrogate(module, x, attention_mask)``'s backward, its own forward value; refused on
    a call that continues a recurrent cache (checked before the call, which updates it)."""
    continuing: dict[int, bool] = {}

    def pre(mod, args, kwargs):
        continuing[id(mod)] = continues_cache(mod, kwargs.get("cache", kwargs.get("cache_params")))

    def hook(mod, args, kwargs, output):
        x = args[0] if args else kwargs.get("hidden_states")
        if not is_recording(x) or not isinstance(output, torch.Tensor):
            return None
        if continuing.pop(id(mod), False):
            raise UnsupportedArchitecture(
                f"{type(mod).__name__}: explaining a call that continues a recurrent cache is not supported; "
                "run the explained sequence in one forward with use_cache=False")
        say_once(what, f"LRP: {what} layers are explained with the rules written in torch (a fused kernel, if any, "
                 "computes the forward value only)")
        return swap_in(mod, output, surrogate(mod, x, kwargs.get("attention_mask")))

    return [module.register_forward_pre_hook(pre, with_kwargs=True), module.register_forward_hook(hook, with_kwargs=True)]


class OutputGatedQuery(FusedQKV):
    """``q_proj`` of Qwen3-Next / Qwen3.5 softmax attention: per head [q (head_dim) | output gate (head_dim)]. The
    gate σ(·) multiplies the attention output and is a constant (no gradient); q takes ``factor``."""

    def __init__(self, factor: float, block: nn.Module | None = None):
        super().__init__(factor, 0.0, 0.0, layout=None, block=block)

    def bind(self, block: nn.Module) -> "OutputGatedQuery":
        return OutputGatedQuery(self.qkv[0], block=block)

    def register(self, module):
        attn = self.block.self_attn
        heads = module.weight.shape[0] // (2 * attn.head_dim)
        one = torch.cat([torch.full((attn.head_dim,), self.qkv[0]), torch.zeros(attn.head_dim)])
        self.factor = one.repeat(heads)
        return super(FusedQKV, self).register(module)

