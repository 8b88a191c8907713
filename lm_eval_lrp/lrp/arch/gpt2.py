"""GPT-2: LayerNorm with bias, fused q|k|v projection (Conv1D ``c_attn``), plain GELU-tanh MLP, learned positions."""

import torch

from . import Architecture
from ..rules import ActivationIdentity, GradScale, NormIdentity


def _qkv_factor(module_dim: int, q: float, k: float, v: float) -> torch.Tensor:
    d = module_dim // 3
    return torch.tensor([q] * d + [k] * d + [v] * d)


class FusedQKV(GradScale):
    """Per-slice gradient factors for a fused ``[q | k | v]`` projection output."""

    def __init__(self, q: float, k: float, v: float):
        super().__init__(factor=None)
        self.qkv = (q, k, v)

    def register(self, module):
        self.factor = _qkv_factor(module.nf, *self.qkv)
        return super().register(module)


def rules(variant: str) -> list:
    norm = NormIdentity("layer")
    qkv = FusedQKV(0.0, 0.0, 1.0) if variant == "cp" else FusedQKV(0.25, 0.25, 0.5)
    return [
        ("*ln_*", norm),
        ("*.attn.c_attn", qkv),
        ("*.mlp.act", ActivationIdentity()),
    ]


ARCHITECTURE = Architecture(
    name="gpt2",
    model_types=("gpt2",),
    rules=rules,
    layers="transformer.h",
    mid="ln_2",
    final_norm="transformer.ln_f",
)
