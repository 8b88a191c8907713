"""Apply an architecture's rule map to a model instance inside a ``with`` block (zennit-style composites).

>>> with attnlrp(model):          # or cp_lrp(model)
...     out = model(inputs_embeds=emb)  # forward values unchanged, backward = LRP

Nothing global is patched: hooks live on this model's modules and are removed on exit, also after an
exception; parameters' ``requires_grad`` flags are switched off inside (no parameter gradients) and restored.
"""

from __future__ import annotations

from contextlib import contextmanager

from torch import nn

from .arch import Architecture, architecture_of
from .arch.coverage import check_coverage

VARIANTS = ("attnlrp", "cp")


class Composite:
    """An adapter's rule map bound to one model: first matching pattern wins per module.

    Entering checks the map's coverage of the model (:mod:`.arch.coverage`): a pattern that matches nothing, or a
    non-linear module without a rule, is refused with :class:`UnsupportedArchitecture` naming the module."""

    def __init__(self, model: nn.Module, variant: str = "attnlrp", arch: Architecture | None = None):
        if variant not in VARIANTS:
            raise ValueError(f"unknown LRP variant {variant!r}; choose one of {VARIANTS}")
        self.model = model
        self.variant = variant
        self.arch = arch or architecture_of(model)
        self.handles: list = []
        self._requires_grad: list = []
        self.applied: dict[str, object] = {}

    def matches(self) -> list[tuple[str, nn.Module, object]]:
        return self.arch.assign(self.model, self.variant)

    def register(self) -> "Composite":
        check_coverage(self.model, self.arch, self.variant)
        try:
            for name, module, rule in self.matches():
                self.handles.extend(rule.register(module))
                self.applied[name] = rule
            for p in self.model.parameters():
                self._requires_grad.append((p, p.requires_grad))
                p.requires_grad_(False)
        except BaseException:  # noqa: BLE001 - undo the partial registration, then re-raise (nothing is swallowed)
            self.remove()
            raise
        return self

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
        for p, flag in self._requires_grad:
            p.requires_grad_(flag)
        self._requires_grad.clear()

    def __enter__(self) -> "Composite":
        return self.register()

    def __exit__(self, *exc) -> None:
        self.remove()


@contextmanager
def lrp_rules(model: nn.Module, variant: str = "attnlrp"):
    """Context manager applying the LRP variant's rules to ``model``; yields the :class:`Composite`."""
    with Composite(model, variant) as composite:
        yield composite


def attnlrp(model: nn.Module) -> Composite:
    """AttnLRP rules on ``model`` (use as ``with attnlrp(model): ...``)."""
    return Composite(model, "attnlrp")


def cp_lrp(model: nn.Module) -> Composite:
    """CP-LRP rules on ``model``: no relevance through q, k and the MLP gate (exactly conservative)."""
    return Composite(model, "cp")
