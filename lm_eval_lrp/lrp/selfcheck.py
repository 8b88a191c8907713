"""The self-check on load: prove on a short probe that the adapter explains *this* model correctly.

>>> figures = self_check(model)      # raises UnsupportedArchitecture (or SelfCheckFailed) with a clear message

1. the adapter exists for ``model_type`` and its coverage check passes (both variants);
2. **forward unchanged**: the logits computed the engine's way with the CP-LRP rules on (graph recorded) equal the
   model's own plain logits;
3. **conservation**: CP-LRP is exact: with 1/σ, q, k and act(gate) constant the network is linear in its inputs and
   its additive constants (biases, learned position embeddings), so ΣR_input + R_absorbed = Δℓ. The relative error
   must be ≤ 1e-3 in fp32 (5e-2 in half precision, where rounding dominates);
4. AttnLRP runs and is finite (its ΣR/Δℓ is reported: AttnLRP is not conservative through softmax).

The figures (a JSON-ready dict) are what the harness writes into the results.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from .arch import architecture_of
from .arch.base import UnsupportedArchitecture
from .arch.coverage import check_coverage
from .composite import Composite
from .dispatch import execution_device, parameter
from .model_io import head_logits

TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-3}
HALF_TOLERANCE = 5e-2


class SelfCheckFailed(UnsupportedArchitecture):
    """The adapter fits the module tree, but the probe shows wrong relevance; ``figures`` holds the measurements."""

    def __init__(self, message: str, figures: dict):
        super().__init__(message)
        self.figures = figures


def probe_ids(vocab: int, n: int = 8) -> list[int]:
    """A fixed, spread-out probe sequence inside the vocabulary (no tokenizer needed)."""
    return [(3 + 37 * i) % vocab for i in range(n)]


class _Absorbed:
    """Relevance absorbed by additive constants under the active rules: biases (b·g at each biased module's output)
    and learned position embeddings (made leaves so that their gradient can be read)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.total = torch.zeros((), dtype=torch.float64)
        self.leaves: list[torch.Tensor] = []
        self.handles: list = []

    def __enter__(self):
        inputs = self.model.get_input_embeddings()
        for module in self.model.modules():
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.Tensor) and bias.dim() == 1 and module is not self.model.get_output_embeddings():
                self.handles.append(module.register_forward_hook(self._bias_hook))
            elif isinstance(module, nn.Embedding) and module is not inputs:
                self.handles.append(module.register_forward_hook(self._leaf_hook))
        return self

    def _bias_hook(self, module, args, output):
        out = output[0] if isinstance(output, tuple) else output
        if isinstance(out, torch.Tensor) and out.requires_grad and out.shape[-1] == module.bias.shape[0]:
            bias = parameter(module, "bias").detach().double().to(out.device)  # offloaded (accelerate): loaded

            def keep(g):
                self.total += (g.detach().double() * bias).sum().cpu()

            out.register_hook(keep)

    def _leaf_hook(self, module, args, output):
        if torch.is_grad_enabled():
            leaf = output.detach().requires_grad_(True)
            self.leaves.append(leaf)
            return leaf
        return None

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles.clear()


def _tolerance(dtype: torch.dtype, tolerance: float | None) -> float:
    if tolerance is not None:
        return tolerance
    return TOLERANCE.get(dtype, HALF_TOLERANCE)


def _probe(model, arch, ids: torch.Tensor, variant: str, target: int, contrast: int) -> dict:
    """One engine-style forward under ``variant``'s rules and the backward of Δℓ: sums and the last row's logits."""
    with Composite(model, variant, arch) as composite, _Absorbed(model) as absorbed, torch.enable_grad():
        collecting = {id(r): r for r in composite.applied.values() if hasattr(r, "collect")}.values()
        for rule in collecting:  # rules with additive constants of their own (expert biases) expose them as leaves
            rule.collect, rule.leaves = True, absorbed.leaves
        emb = model.get_input_embeddings()(ids.unsqueeze(0)).detach().requires_grad_(True)
        out = arch.backbone(model)(inputs_embeds=emb, attention_mask=torch.ones_like(ids).unsqueeze(0), use_cache=False)
        row = out.last_hidden_state[0, -1:]
        logits = head_logits(model, row.detach())[0].float()
        chosen = head_logits(model, row, [target, contrast])[0]
        value = chosen[0] - chosen[1]
        grads = torch.autograd.grad(value, [emb] + absorbed.leaves, allow_unused=True)
        for rule in collecting:
            rule.collect, rule.leaves = False, []
    head_bias = getattr(model.get_output_embeddings(), "bias", None)
    extra = 0.0 if head_bias is None else float(head_bias[target] - head_bias[contrast])
    for leaf, g in zip(absorbed.leaves, grads[1:]):
        if g is not None:
            extra += float((leaf.detach().double() * g.double()).sum())
    sum_input = float((emb.detach().double() * grads[0].double()).sum()) if grads[0] is not None else 0.0
    return {"delta": float(value.detach()), "sum_input": sum_input, "absorbed": float(absorbed.total) + extra,
            "logits": logits.detach().cpu()}


def self_check(model: nn.Module, *, n_tokens: int = 8, tolerance: float | None = None, arch=None) -> dict:
    """Run the checks above on ``model``; returns the figures or raises :class:`UnsupportedArchitecture`
    (:class:`SelfCheckFailed`, with ``.figures``, when the probe fails). ``arch`` overrides the registered adapter."""
    start = time.perf_counter()
    arch = arch or architecture_of(model)
    coverage = check_coverage(model, arch, "cp")
    check_coverage(model, arch, "attnlrp")
    embeddings = model.get_input_embeddings()
    dtype = embeddings.weight.dtype
    vocab = model.get_output_embeddings().weight.shape[0]
    ids = torch.tensor(probe_ids(min(vocab, embeddings.weight.shape[0]), n_tokens), device=execution_device(embeddings))
    with torch.no_grad():
        plain = model(ids.unsqueeze(0), use_cache=False).logits[0, -1].float().cpu()
    target, contrast = int(plain.argmax()), int(plain.argmin())
    cp = _probe(model, arch, ids, "cp", target, contrast)
    lrp = _probe(model, arch, ids, "attnlrp", target, contrast)
    tol = _tolerance(dtype, tolerance)
    scale = 1.0 + float(plain.abs().max())
    forward_diff = max(float((p["logits"] - plain).abs().max()) for p in (cp, lrp))
    forward_tol = (1e-5 if dtype in TOLERANCE else 2e-2) * scale
    delta = cp["delta"]
    error = abs(cp["sum_input"] + cp["absorbed"] - delta) / max(abs(delta), 1e-12)
    figures = {
        "model_type": getattr(model.config, "model_type", None),
        "adapter": arch.name,
        "dtype": str(dtype).replace("torch.", ""),
        "probe_tokens": n_tokens,
        "target": target,
        "contrast": contrast,
        "delta": delta,
        "cp_sum_input": cp["sum_input"],
        "cp_absorbed": cp["absorbed"],
        "conservation_rel_error": error,
        "tolerance": tol,
        "forward_max_abs_diff": forward_diff,
        "attnlrp_ratio": lrp["sum_input"] / delta if delta else float("nan"),
        "coverage": coverage,
        "seconds": round(time.perf_counter() - start, 3),
    }
    problems = []
    if forward_diff > forward_tol:
        problems.append(f"the forward under the rules differs from the model's own by {forward_diff:.3g}")
    if not error <= tol:
        problems.append(f"CP-LRP conservation error {error:.3g} exceeds {tol:g}")
    if not all(map(lambda v: v == v and abs(v) != float("inf"), (lrp["sum_input"], cp["sum_input"]))):
        problems.append("relevance is not finite")
    figures["passed"] = not problems
    if problems:
        raise SelfCheckFailed(
            f"LRP self-check failed for model_type={figures['model_type']!r} (adapter {arch.name!r}): "
            + "; ".join(problems) + ". The model is evaluated without attribution.", figures)
    return figures
