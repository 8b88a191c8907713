"""The architecture adapter: everything the engine needs to know about one model family, in one object.

An :class:`Architecture` owns

* the **rule map**: ``block_rules(variant)`` lists ``(pattern, rule)`` with patterns *relative to a decoder block*
  (``"self_attn.q_proj"``, ``"*norm"``); the final norm gets ``final_rule(variant)``;
* the **residual node locations**: ``layers`` (dotted path of the blocks), ``mid`` (sub-module of a block whose
  input is the residual stream after attention), ``final_norm``;
* the **attention parts** (:class:`AttentionParts`): q/k/v or a fused projection and how to split it, o_proj,
  norms around attention, q/k norms, RoPE, and whether the closed-form attention edges apply;
* ``containers``: the sub-modules of a block that hold other modules and whose own forward the rules account for
  (attention: q/k/v factors; gated MLP: ÷2 on ``down_proj``; MoE: routing weights constant). The coverage check
  (:mod:`.coverage`) refuses any other module that computes something non-linear without a rule.
"""

from __future__ import annotations

import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn


class UnsupportedArchitecture(ValueError):
    """The model's architecture has no LRP rule map, or its modules do not match the one it has."""


@dataclass(frozen=True)
class AttentionParts:
    """Where the pieces of one softmax attention live, relative to a decoder block.

    ``fused`` names a single ``q|k|v`` projection, split by ``split(attn, out) -> (q, k, v)`` (each ``[B, T, n·hd]``);
    otherwise ``q``, ``k``, ``v`` name three projections. ``qk_norm_flat``: the q/k norms span the whole projection
    (OLMo2/3), else they act per head (Qwen3, Gemma3). ``closed_form``: the exact closed-form attention edges apply
    (no soft-capping, no sinks); otherwise graphs use the batch-packed backward.
    """

    module: str = "self_attn"
    q: str = "q_proj"
    k: str = "k_proj"
    v: str = "v_proj"
    o: str = "o_proj"
    fused: str | None = None
    split: Callable | None = None
    pre_norm: str | None = "input_layernorm"
    post_norm: str | None = None
    q_norm: str | None = None
    k_norm: str | None = None
    qk_norm_flat: bool = False
    rope: bool = True
    closed_form: bool = True

    def projections(self) -> tuple[str, ...]:
        return (self.fused,) if self.fused else (self.q, self.k, self.v)


@dataclass(frozen=True)
class Architecture:
    """How to explain one architecture family (see the module docstring)."""

    name: str
    model_types: tuple[str, ...]
    block_rules: Callable[[str], list]
    final_rule: Callable[[str], object]
    layers: str = "model.layers"
    mid: str = "post_attention_layernorm"
    final_norm: str = "model.norm"
    attention: AttentionParts = field(default_factory=AttentionParts)
    containers: tuple[str, ...] = ("self_attn", "mlp")
    optional: tuple[str, ...] = ()  # block patterns that need not match (MoE and dense layers may alternate) ...
    groups: tuple[tuple[str, ...], ...] = ()  # ... but each block must match one pattern of every group
    refuse: Callable | None = None  # f(config) -> reason this configuration of the family is not supported, or None
    branch_scale: Callable | None = None  # f(block): constant multiplying each residual branch (Granite)
    token_wise_mlp: bool | Callable = True  # mid -> out is token-wise (False: parallel attention and MLP); or f(config)
    notes: str = ""

    def rules(self, variant: str) -> list:
        """The rule map as ``[(full-name pattern, rule)]`` (block patterns under ``layers.<i>.``)."""
        out = [(f"{self.layers}.*.{pattern}", rule) for pattern, rule in self.block_rules(variant)]
        return out + [(self.final_norm, self.final_rule(variant))]

    def mlp_is_token_wise(self, model: nn.Module) -> bool:
        """Whether the ``mid -> out`` transition acts token by token (graphs may then use the diagonal shortcut)."""
        flag = self.token_wise_mlp
        return bool(flag(model.config) if callable(flag) else flag)

    def backbone(self, model: nn.Module) -> nn.Module:
        """The decoder stack without the LM head (the module holding ``layers``), returning ``last_hidden_state``."""
        parent = self.layers.rpartition(".")[0]
        return model.get_submodule(parent) if parent else model

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return list(model.get_submodule(self.layers))

    def assign(self, model: nn.Module, variant: str) -> list[tuple[str, nn.Module, object]]:
        """``(name, module, rule)`` for every module a rule applies to (first matching pattern wins, per block)."""
        block_rules = self.block_rules(variant)
        found = []
        for i, block in enumerate(self.blocks(model)):
            for rel, module in block.named_modules():
                for pattern, rule in block_rules:
                    if rel and fnmatch.fnmatchcase(rel, pattern):
                        bound = rule.bind(block) if hasattr(rule, "bind") else rule
                        found.append((f"{self.layers}.{i}.{rel}", module, bound))
                        break
        found.append((self.final_norm, model.get_submodule(self.final_norm), self.final_rule(variant)))
        return found

    # ------------------------------------------------------------------ attention parts (graphs)

    def attention_module(self, block: nn.Module) -> nn.Module | None:
        try:
            return block.get_submodule(self.attention.module)
        except AttributeError:
            return None

    def qkv(self, attn: nn.Module, hidden: torch.Tensor, position_embeddings) -> tuple:
        """q, k (after q/k norms and RoPE) and v of one attention call, ``[B, heads, T, hd]``, recomputed from the
        attention module's input with its own sub-modules and its modeling file's ``apply_rotary_pos_emb``."""
        parts = self.attention
        B, T, _ = hidden.shape
        hd = _head_dim(attn)
        if parts.fused:
            q, k, v = parts.split(attn, getattr(attn, parts.fused)(hidden))
        else:
            q, k, v = (getattr(attn, name)(hidden) for name in (parts.q, parts.k, parts.v))
        qn = getattr(attn, parts.q_norm) if parts.q_norm else None
        kn = getattr(attn, parts.k_norm) if parts.k_norm else None
        if qn is not None and parts.qk_norm_flat:
            q, k = qn(q), kn(k)
        q, k, v = (t.reshape(B, T, -1, hd) for t in (q, k, v))
        if qn is not None and not parts.qk_norm_flat:
            q, k = qn(q), kn(k)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        if parts.rope and getattr(attn, "use_rope", True) and position_embeddings is not None:
            cos, sin = position_embeddings
            q, k = rotary_function(attn)(q, k, cos, sin)
        return q, k, v


def _head_dim(attn: nn.Module) -> int:
    for name in ("head_dim", "head_size"):
        value = getattr(attn, name, None)
        if isinstance(value, int):
            return value
    raise UnsupportedArchitecture(f"{type(attn).__name__} exposes no head_dim")


def rotary_function(attn: nn.Module) -> Callable:
    """``apply_rotary_pos_emb`` of the attention module's own modeling file."""
    module = importlib.import_module(type(attn).__module__)
    fn = getattr(module, "apply_rotary_pos_emb", None)
    if fn is None:
        raise UnsupportedArchitecture(f"{type(attn).__module__} has no apply_rotary_pos_emb")
    return fn
