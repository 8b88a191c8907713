"""Per-architecture rule maps. One short file per architecture family; registered by ``model_type``.

To add an architecture: write ``lm_eval_lrp/lrp/arch/<name>.py`` defining an :class:`Architecture` and list it in
``_MODULES`` below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from torch import nn


class UnsupportedArchitecture(ValueError):
    """The model's architecture has no LRP rule map."""


@dataclass(frozen=True)
class Architecture:
    """How to explain one architecture family.

    ``rules(variant)`` returns ``[(module-name pattern, rule)]``; ``layers`` is the dotted path of the decoder
    blocks; ``mid`` names the sub-module of a block whose *input* is the residual stream after attention;
    ``final_norm`` the norm before the LM head.
    """

    name: str
    model_types: tuple[str, ...]
    rules: Callable[[str], list]
    layers: str
    mid: str
    final_norm: str
    notes: str = field(default="")


_MODULES = ("llama", "mistral", "qwen2", "qwen3", "gemma3", "olmo2", "gpt2")


def registry() -> dict[str, Architecture]:
    table: dict[str, Architecture] = {}
    for mod in _MODULES:
        arch = importlib.import_module(f"{__name__}.{mod}").ARCHITECTURE
        for model_type in arch.model_types:
            table[model_type] = arch
    return table


def supported_model_types() -> list[str]:
    return sorted(registry())


def architecture_of(model: nn.Module) -> Architecture:
    """The rule map for ``model`` (a Hugging Face causal LM), or a clear :class:`UnsupportedArchitecture`."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    table = registry()
    if model_type not in table:
        raise UnsupportedArchitecture(
            f"LRP rules are not defined for model_type={model_type!r} ({type(model).__name__}). "
            f"Supported: {', '.join(sorted(table))}. To add one, write lm_eval_lrp/lrp/arch/<name>.py with an "
            "Architecture (rule map) and list it in lm_eval_lrp/lrp/arch/__init__.py."
        )
    return table[model_type]


def get_submodule(model: nn.Module, dotted: str) -> nn.Module:
    return model.get_submodule(dotted)
