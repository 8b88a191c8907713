"""Architecture adapters: one short file per family, registered by ``model_type`` (see :mod:`.base`).

To add an architecture: write ``lm_eval_lrp/lrp/arch/<name>.py`` defining ``ARCHITECTURE`` (an
:class:`~.base.Architecture`, usually from :func:`._gated.decoder`) and list the file in ``_MODULES`` below. The
coverage check (:func:`check_coverage`) and the self-check (:func:`lm_eval_lrp.lrp.selfcheck.self_check`) then tell whether it is complete.
"""

from __future__ import annotations

import importlib

from torch import nn

from .base import Architecture, AttentionParts, UnsupportedArchitecture

_MODULES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "olmo2", "phi3", "gpt2", "gpt_neox",
            "mixtral", "qwen2_moe", "deepseek", "llama4", "gpt_oss", "gemma4")


#: families transformers ships that are refused on purpose, with the reason (a clearer message than "unknown")
REFUSED = {
    "qwen3_next": "its gated delta-net (linear attention) layers have no LRP rule here yet",
    "qwen3_5": "its gated delta-net (linear attention) layers have no LRP rule here yet",
    "qwen3_5_moe": "its gated delta-net (linear attention) layers have no LRP rule here yet",
    "phi": "Phi-1/2 (parallel attention with a dense MLP and partial RoPE) has no adapter yet",
}


def registry() -> dict[str, Architecture]:
    table: dict[str, Architecture] = {}
    for mod in _MODULES:
        module = importlib.import_module(f"{__name__}.{mod}")
        for arch in getattr(module, "ARCHITECTURES", None) or (module.ARCHITECTURE,):
            for model_type in arch.model_types:
                table[model_type] = arch
    return table


def supported_model_types() -> list[str]:
    return sorted(registry())


def architecture_of(model: nn.Module) -> Architecture:
    """The adapter for ``model`` (a Hugging Face causal LM), or a clear :class:`UnsupportedArchitecture`."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    table = registry()
    if model_type not in table:
        why = f": {REFUSED[model_type]}" if model_type in REFUSED else ""
        raise UnsupportedArchitecture(
            f"LRP rules are not defined for model_type={model_type!r} ({type(model).__name__}){why}. "
            f"Supported: {', '.join(sorted(table))}. To add one, write lm_eval_lrp/lrp/arch/<name>.py with an "
            "Architecture (rule map) and list it in lm_eval_lrp/lrp/arch/__init__.py."
        )
    return table[model_type]


def get_submodule(model: nn.Module, dotted: str) -> nn.Module:
    return model.get_submodule(dotted)


def check_coverage(model: nn.Module, arch: Architecture | None = None, variant: str = "attnlrp") -> dict:
    from .coverage import check_coverage as check

    return check(model, arch or architecture_of(model), variant)


__all__ = [
    "Architecture",
    "AttentionParts",
    "UnsupportedArchitecture",
    "architecture_of",
    "check_coverage",
    "registry",
    "supported_model_types",
]
