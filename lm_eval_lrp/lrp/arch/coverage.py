"""The coverage check: does an adapter's rule map fit the modules of the model in front of us?

Refused, with the module named (:class:`UnsupportedArchitecture`):

* a block pattern that matches nothing in some block (``optional`` ones excepted, but every block must match one
  pattern of each of the adapter's ``groups``: MoE or dense MLP);
* a module inside a block that computes something non-linear and carries no rule: any leaf that is not a linear
  map (``nn.Linear``, GPT-2's ``Conv1D``), dropout, identity or a rotary table; any container the adapter does
  not list in ``containers`` (its forward may combine its children non-linearly: a router, a new gate);
* a norm rule of the wrong kind (RMS on a LayerNorm or the reverse), an activation with no known f(x)/x;
* outside the blocks: anything but embeddings, rotary tables, dropout, the final norm and the LM head.

Modules under a rule that replaces their whole backward (``Rule.opaque``) are covered by it.
"""

from __future__ import annotations

import fnmatch

from torch import nn

from ..rules import ActivationIdentity, NormIdentity, activation_kind
from .base import Architecture, UnsupportedArchitecture

_LINEAR_NAMES = ("Conv1D",)  # transformers' GPT-2 linear layer (x @ W + b)
_PASSIVE = (nn.Dropout, nn.Identity)


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or type(module).__name__ in _LINEAR_NAMES


def _is_rotary(module: nn.Module) -> bool:
    return type(module).__name__.endswith("RotaryEmbedding")


def _refuse(model: nn.Module, where: str, module: nn.Module | None, why: str) -> UnsupportedArchitecture:
    kind = f" ({type(module).__name__})" if module is not None else ""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return UnsupportedArchitecture(
        f"LRP coverage check failed for model_type={model_type!r}: {where}{kind} {why}. The relevance would be "
        "wrong, so this model is not explained; the adapter in lm_eval_lrp/lrp/arch/ must be updated for it."
    )


def _check_rule_fits(model, name: str, module: nn.Module, rule) -> None:
    if hasattr(rule, "check"):
        try:
            rule.check(module)
        except (UnsupportedArchitecture, TypeError) as err:
            raise _refuse(model, name, module, f"does not fit its rule: {err}") from None
    if isinstance(rule, NormIdentity):
        layer = isinstance(module, nn.LayerNorm) or type(module).__name__ == "LayerNorm"
        rms = "RMSNorm" in type(module).__name__ or isinstance(module, getattr(nn, "RMSNorm", ()))
        if (rule.kind == "layer" and rms) or (rule.kind == "rms" and layer):
            raise _refuse(model, name, module, f"gets the {rule.kind!r} norm rule but is a different norm")
        if not (layer or rms or "Norm" in type(module).__name__):
            raise _refuse(model, name, module, "gets a norm rule but is not a norm")
    if isinstance(rule, ActivationIdentity) and rule.kind is None:
        try:
            activation_kind(module)
        except TypeError as err:
            raise _refuse(model, name, module, f"is an activation without an identity rule ({err})") from None


def check_coverage(model: nn.Module, arch: Architecture, variant: str = "attnlrp") -> dict:
    """Check ``arch``'s rule map against ``model``; returns figures, raises :class:`UnsupportedArchitecture`."""
    reason = arch.refuse(model.config) if arch.refuse else None
    if reason:
        raise _refuse(model, f"this {arch.name} configuration", None, f"is not supported: {reason}")
    try:
        blocks = arch.blocks(model)
        final = model.get_submodule(arch.final_norm)
    except AttributeError as err:
        raise _refuse(model, f"the adapter {arch.name!r}", None, f"does not fit the module tree ({err})") from None
    block_rules = arch.block_rules(variant)
    assigned = {id(m): (name, rule) for name, m, rule in arch.assign(model, variant)}
    n_rules = 0
    for index, block in enumerate(blocks):
        prefix = f"{arch.layers}.{index}"
        seen = {pattern: False for pattern, _ in block_rules}
        covered: list[str] = []  # relative names of modules under an opaque rule
        try:
            block.get_submodule(arch.mid)
        except AttributeError:
            raise _refuse(model, f"{prefix}.{arch.mid}", None, "(the residual node after attention) is missing") from None
        for rel, module in block.named_modules():
            if not rel:
                continue
            for pattern, _ in block_rules:
                if fnmatch.fnmatchcase(rel, pattern):
                    seen[pattern] = True
                    break
            name = f"{prefix}.{rel}"
            if any(rel.startswith(c + ".") for c in covered):
                continue
            if id(module) in assigned:
                rule = assigned[id(module)][1]
                _check_rule_fits(model, name, module, rule)
                n_rules += 1
                if rule.opaque:
                    covered.append(rel)
                continue
            if next(module.children(), None) is None:  # a leaf without a rule
                if _is_linear(module) or isinstance(module, _PASSIVE) or _is_rotary(module):
                    continue
                raise _refuse(model, name, module, "computes something that is not linear and carries no LRP rule")
            if not any(fnmatch.fnmatchcase(rel, c) for c in arch.containers):
                raise _refuse(model, name, module, "is a module the adapter does not know (no rule, not a known container)")
        for pattern, hit in seen.items():
            if not hit and pattern not in arch.optional:
                raise _refuse(model, f"the rule pattern {pattern!r}", None, f"matches no module in block {index}")
        for group in arch.groups:
            if not any(seen.get(p) for p in group):
                raise _refuse(model, f"block {index}", block, f"matches none of the rule patterns {list(group)}")
    _check_rule_fits(model, arch.final_norm, final, arch.final_rule(variant))
    _check_outside_blocks(model, arch, blocks)
    return {"adapter": arch.name, "blocks": len(blocks), "modules_with_rules": n_rules + 1, "patterns": len(block_rules) + 1}


def _check_outside_blocks(model: nn.Module, arch: Architecture, blocks: list[nn.Module]) -> None:
    inside = {id(m) for b in blocks for m in b.modules()}
    head = model.get_output_embeddings()
    final = model.get_submodule(arch.final_norm)
    layer_list = model.get_submodule(arch.layers)
    for name, module in model.named_modules():
        if id(module) in inside or module is final or module is head or module is layer_list:
            continue
        if isinstance(module, (nn.Embedding,) + _PASSIVE) or _is_rotary(module):
            continue
        if arch.layers.startswith(name + ".") or name == "":  # the model wrapper and the base model
            continue
        raise _refuse(model, name, module, "sits outside the decoder blocks and is not an embedding, a rotary table, "
                      "the final norm or the LM head")
