"""Architecture adapters: one short file per family, registered by ``model_type`` (see :mod:`.base`).

To add an architecture: write ``lm_eval_lrp/lrp/arch/<name>.py`` defining ``ARCHITECTURE`` (an
:class:`~.base.Architecture`, usually from :func:`._gated.decoder`) and list the file in ``_MODULES`` below. The
coverage check (:func:`check_coverage`) and the self-check (:func:`lm_eval_lrp.lrp.selfcheck.self_check`) then tell whether it is complete.
"""

from __future__ import annotations

import importlib

from torch import nn

from .base import Architecture, AttentionParts, UnsupportedArchitecture

_MODULES = ("llama", "granite", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "olmo2", "exaone4", "phi3",
            "gpt2", "gpt_neox", "mixtral", "qwen3_moe", "olmoe", "qwen2_moe", "deepseek", "llama4", "gpt_oss", "gemma4",
            "qwen3_next", "mamba2", "bamba", "granitemoehybrid", "mamba", "jamba", "lfm2", "nemotron_h")


#: families transformers ships that are refused on purpose, with the reason (a clearer message than "unknown");
#: a refusal stays only where the derivation of a layer's rule is missing here
_NO_RULE = "no LRP rule is derived here yet for"
REFUSED = {
    "phi": "Phi-1/2 (parallel attention with a dense MLP and partial RoPE) has no adapter yet",
    "falcon_h1": f"{_NO_RULE} its µP multipliers (a multiplier on the logits, and on the Mamba-2 projection) "
                 "beside its parallel attention + Mamba-2 block",
    "zamba": f"{_NO_RULE} its transformer block shared across layers (one module on several residual positions)",
    "zamba2": f"{_NO_RULE} its transformer blocks shared across layers (one module on several residual positions)",
    "rwkv": f"{_NO_RULE} RWKV time mixing (exponential-decay WKV with a bonus term)",
    "recurrent_gemma": f"{_NO_RULE} the RG-LRU recurrence (gated linear recurrent unit)",
    "xlstm": f"{_NO_RULE} the mLSTM / sLSTM cells (exponential gating with a normaliser state)",
    "kimi_linear": f"{_NO_RULE} Kimi delta attention (channel-wise gated delta rule)",
    "minimax": f"{_NO_RULE} lightning attention (linear attention with a block decay)",
    "olmo_hybrid": f"{_NO_RULE} its linear-attention layers",
    "bailing_hybrid": f"{_NO_RULE} its linear-attention layers",
    "gemma3n_text": f"{_NO_RULE} AltUp, Laurel and per-layer inputs of Gemma 3n",
    "deepseek_v4": f"{_NO_RULE} hyper-connections (several residual streams mixed by input-dependent matrices) "
                   "and its compressed sparse attention (compressors and a top-k indexer)",
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
