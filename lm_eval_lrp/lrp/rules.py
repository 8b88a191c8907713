"""LRP rules as small objects, each applied to one module instance through removable hooks.

Every rule leaves the forward value untouched (bit for bit) and only changes what the backward pass
propagates, so that relevance = input x modified gradient (AttnLRP, Achtibat et al. 2024):

* :class:`NormIdentity`   -- RMSNorm/LayerNorm with the normaliser 1/sigma held constant (identity rule);
* :class:`ActivationIdentity` -- element-wise activation f with backward g * f(x)/x (identity rule);
* :class:`GradScale`      -- multiply the gradient of a module's output (or input) by a constant; this
  realises the uniform rule on products (1/2 per factor) and, with 0, CP-LRP's "no relevance through";
* :class:`StopGradient`   -- the module's output is a constant in the backward (also every tensor of a tuple
  output: mixture-of-experts routers);
* :class:`FusedQKV`       -- per-slice gradient factors on a fused q|k|v projection (GPT-2, Phi-3, GPT-NeoX);
* :func:`softcap`         -- ``c·tanh(x/c)`` with the identity rule (logit soft-capping at the head).

Rules only act while autograd records a graph; under ``torch.no_grad`` they are inert.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .dispatch import parameter


class _SwapBackward(torch.autograd.Function):
    """Forward: ``value`` (the module's own output, detached), exactly. Backward: ``backward(g, *saved)`` into ``x``.

    A custom autograd function rather than a straight-through sum: no surrogate is computed in the forward and
    only ``saved`` is kept for the backward (the module's own graph is dropped with its detached output).
    """

    @staticmethod
    def forward(ctx, x, value, backward, *saved):
        ctx.rule_backward = backward
        ctx.save_for_backward(*saved)
        return value

    @staticmethod
    def backward(ctx, g):
        return (ctx.rule_backward(g, *ctx.saved_tensors), None, None) + (None,) * len(ctx.saved_tensors)


def swap_backward(x: torch.Tensor, value: torch.Tensor, backward, *saved: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward; in the backward, the gradient ``backward(g, *saved)`` flows into ``x`` only."""
    return _SwapBackward.apply(x, value.detach(), backward, *saved)


def is_recording(x) -> bool:
    return torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.requires_grad


class Rule:
    """A rule attaches hooks to one module and returns their handles.

    ``opaque``: the rule replaces the backward of the whole module (its sub-modules need no rules of their own)."""

    opaque = False

    def register(self, module: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class NormIdentity(Rule):
    """Identity rule through a normalisation layer: backward of ``x * (w / sigma(x))`` with ``sigma`` constant.

    ``kind`` is ``"rms"`` (Llama-style RMSNorm, weight ``w + weight_offset``) or ``"layer"`` (LayerNorm: the mean
    subtraction is linear and stays in the backward; the bias is a constant that absorbs relevance).
    """

    opaque = True

    def __init__(self, kind: str = "rms", weight_offset: float = 0.0):
        if kind not in ("rms", "layer"):
            raise ValueError(f"unknown norm kind {kind!r}")
        self.kind = kind
        self.weight_offset = weight_offset

    def _scale(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``w / sigma(x)`` per row, as the constant of the identity rule: ``[..., 1]`` or ``[..., d]``."""
        eps = getattr(module, "variance_epsilon", None)
        if eps is None:
            eps = getattr(module, "eps", 1e-6)
        xf = x.detach().float()
        if self.kind == "layer":
            xf = xf - xf.mean(-1, keepdim=True)
        scale = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        weight = parameter(module, "weight")  # offloaded (accelerate): loaded, not the empty meta tensor
        if weight is not None:
            scale = scale * (weight.detach().float().to(xf.device) + self.weight_offset)
        return scale

    def register(self, module):
        layer = self.kind == "layer"

        def backward(g, scale):
            gx = g.float().to(scale.device) * scale  # scale lives on the input's device (device maps)
            if layer:  # the mean subtraction is linear: its own backward
                gx = gx - gx.mean(-1, keepdim=True)
            return gx

        def hook(mod, args, output):
            x = args[0] if args else None
            if not is_recording(x):
                return None
            dtype = x.dtype
            return swap_backward(x, output, lambda g, scale: backward(g, scale).to(dtype), self._scale(mod, x))

        return [module.register_forward_hook(hook)]


def _silu_ratio(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x)


def _gelu_ratio(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x * (1.0 / math.sqrt(2.0))))


def _gelu_tanh_ratio(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def _relu_ratio(x: torch.Tensor) -> torch.Tensor:
    return (x > 0).to(x.dtype)


#: f(x)/x for the element-wise activations we know, written without a division (stable at x = 0).
ACTIVATION_RATIOS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": _silu_ratio,
    "gelu": _gelu_ratio,
    "gelu_tanh": _gelu_tanh_ratio,
    "relu": _relu_ratio,
}

_ACTIVATION_CLASSES = {
    "SiLU": "silu",
    "SiLUActivation": "silu",
    "GELU": "gelu",
    "GELUActivation": "gelu",
    "GELUTanh": "gelu_tanh",
    "NewGELUActivation": "gelu_tanh",
    "PytorchGELUTanh": "gelu_tanh",
    "GELUPytorchTanh": "gelu_tanh",
    "FastGELUActivation": "gelu_tanh",
    "GELUTanhActivation": "gelu_tanh",
    "ReLU": "relu",
    "ReLUActivation": "relu",
}


def activation_kind(module: nn.Module) -> str:
    """Name of the activation implemented by ``module`` (``silu``, ``gelu``, ``gelu_tanh`` or ``relu``)."""
    name = type(module).__name__
    if name == "GELU" and getattr(module, "approximate", "none") == "tanh":
        return "gelu_tanh"
    if name in _ACTIVATION_CLASSES:
        return _ACTIVATION_CLASSES[name]
    raise TypeError(
        f"no identity rule for activation {name}; known: {sorted(_ACTIVATION_CLASSES)} "
        "(add its f(x)/x to lm_eval_lrp/lrp/rules.py)"
    )


class ActivationIdentity(Rule):
    """Identity rule through an element-wise activation: backward ``g * f(x)/x`` (so R(x) = R(f(x)))."""

    opaque = True

    def __init__(self, kind: str | None = None):
        self.kind = kind

    def register(self, module):
        ratio = ACTIVATION_RATIOS[self.kind or activation_kind(module)]

        def backward(g, x):  # f(x)/x in float32 (half-precision sigmoid/erf lose the small ratios)
            return (g.float() * ratio(x.float())).to(g.dtype)

        def hook(mod, args, output):
            x = args[0] if args else None
            if not is_recording(x):
                return None
            return swap_backward(x, output, backward, x.detach())

        return [module.register_forward_hook(hook)]


def gated_product(gate: torch.Tensor, up: torch.Tensor, value: torch.Tensor, ratio, variant: str) -> torch.Tensor:
    """``act(gate) * up`` of a gated MLP under its rules; ``value`` is ``act(gate.detach())`` and ``ratio`` its
    f(x)/x (:data:`ACTIVATION_RATIOS`). CP-LRP: the activated gate is a constant. AttnLRP: the identity rule through
    the activation (same value) and the uniform rule on the product."""
    if variant == "cp":
        return value * up
    act = value + (gate - gate.detach()) * ratio(gate.detach())
    return 0.5 * (act * up.detach() + act.detach() * up)


class Container(Rule):
    """No hooks: the module's children carry the rules (attention projections, MLP activation, MoE parts)."""

    def register(self, module):
        return []


class GradScale(Rule):
    """Multiply the gradient that reaches a module's output (``where="output"``) or first input (``"input"``).

    ``factor`` is a number or a 1-D tensor broadcast over the last dimension (fused q|k|v projections).
    A factor of 1/2 on the input of ``down_proj`` is the uniform rule on ``act(gate) * up``; 1/4 on q and k,
    1/2 on v is the uniform rule on the two attention matmuls.
    """

    def __init__(self, factor, where: str = "output"):
        if where not in ("output", "input"):
            raise ValueError(f"where must be 'output' or 'input', not {where!r}")
        self.factor = factor
        self.where = where

    def _scale(self, t: torch.Tensor) -> None:
        f = self.factor
        if isinstance(f, torch.Tensor):
            f = f.to(device=t.device, dtype=t.dtype)
        t.register_hook(lambda g: g * f)

    def register(self, module):
        if self.where == "output":

            def hook(mod, args, output):
                t = output[0] if isinstance(output, tuple) else output
                if is_recording(t):
                    self._scale(t)

            return [module.register_forward_hook(hook)]

        def pre_hook(mod, args):
            if args and is_recording(args[0]):
                self._scale(args[0])

        return [module.register_forward_pre_hook(pre_hook)]


class StopGradient(Rule):
    """The module's output is a constant in the backward (CP-LRP on q, k and the MLP gate; routing weights).

    A tuple output (a mixture-of-experts router: logits, weights, indices) has every tensor in it detached."""

    opaque = True

    def register(self, module):
        def hook(mod, args, output):
            if isinstance(output, torch.Tensor) and is_recording(output):
                return output.detach()
            if isinstance(output, tuple) and any(is_recording(t) for t in output):
                return tuple(t.detach() if isinstance(t, torch.Tensor) else t for t in output)
            return None

        return [module.register_forward_hook(hook)]


class FusedQKV(GradScale):
    """Per-slice gradient factors on the output of a fused ``q|k|v`` projection.

    ``layout(module, block)`` lists the output features in order as ``[(slot, count), ...]`` with slot ``"q"``,
    ``"k"``, ``"v"`` or ``"1"`` (no factor: features that reach q/k/v through later modules, such as MLA's latent)
    (GPT-2 and Phi-3: three blocks; GPT-NeoX: ``[q|k|v]`` per head); ``qkv`` are the three factors. :meth:`bind` gives the decoder block the layout may read head counts from."""

    def __init__(self, q: float, k: float, v: float, layout: Callable, block: nn.Module | None = None):
        super().__init__(factor=None)
        self.qkv = (float(q), float(k), float(v))
        self.layout = layout
        self.block = block

    def bind(self, block: nn.Module) -> "FusedQKV":
        return FusedQKV(*self.qkv, layout=self.layout, block=block)

    def register(self, module):
        f = dict(zip("qkv", self.qkv), **{"1": 1.0})
        self.factor = torch.cat([torch.full((int(n),), f[slot]) for slot, n in self.layout(module, self.block)])
        if self.factor.numel() != module.weight.shape[0 if isinstance(module, nn.Linear) else -1]:
            raise ValueError(f"fused q|k|v layout of {self.factor.numel()} features does not fit {module}")
        return super().register(module)


class _Softcap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cap):
        y = torch.tanh(x / cap) * cap
        ratio = torch.where(x == 0, torch.ones_like(x), y / torch.where(x == 0, torch.ones_like(x), x))
        ctx.save_for_backward(ratio)
        return y

    @staticmethod
    def backward(ctx, g):
        (ratio,) = ctx.saved_tensors
        return g * ratio, None


def softcap(x: torch.Tensor, cap: float, identity: bool = True) -> torch.Tensor:
    """``cap · tanh(x / cap)`` (Gemma's logit soft-capping); with ``identity`` the backward is ``g · f(x)/x``
    (identity rule: the relevance of each capped logit is its capped value), else the plain gradient."""
    if identity and is_recording(x):
        return _Softcap.apply(x, float(cap))
    return torch.tanh(x / cap) * cap
