"""Greedy rollouts forced at *different* output positions, as one batch.

Each row is (position i, forced token): its prefix is prompt + output[:i], a slice of the scan's KV cache. The
slices have different lengths, so they are laid out left-padded in one cache (zeros on the left, masked out by the
attention mask) and every row continues from its own position (explicit position ids). One forward per new token
serves every row of a failure, where one batch per position needed a forward per position per token.

Only plain full-attention caches are laid out so (:func:`can_batch`); other caches (sliding windows) keep the
rollouts one position at a time. The rows' tokens are those of one position at a time up to float rounding in
attention over padding; the tests check that they are the same tokens.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from ..lrp.dispatch import input_device
from .decoding import cache_keyword, cache_of, extend_greedy


def can_batch(cache) -> bool:
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer and layer.keys is not None for layer in layers)


def _left_padded(cache, lengths: list[int]) -> tuple[DynamicCache, torch.Tensor]:
    """A cache with row r holding the first ``lengths[r]`` positions of ``cache`` (batch 1), right-aligned."""
    width = max(lengths)
    data = []
    for layer in cache.layers:
        k, v = layer.keys[0], layer.values[0]  # [H, T, D]
        keys = k.new_zeros((len(lengths), k.shape[0], width, k.shape[-1]))
        values = v.new_zeros((len(lengths), v.shape[0], width, v.shape[-1]))
        for r, n in enumerate(lengths):
            keys[r, :, width - n :] = k[:, :n]
            values[r, :, width - n :] = v[:, :n]
        data.append((keys, values))
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for r, n in enumerate(lengths):
        mask[r, width - n :] = 1
    return DynamicCache(ddp_cache_data=data), mask


def greedy_rows(model, cache, n_prompt: int, rows: Sequence[tuple[int, int]], max_new_tokens: int,
                eos_ids=frozenset(), stop: Callable[[list[int]], bool] | None = None) -> list[list[int]]:
    """For each (output position i, forced token) of ``rows``: the greedy tokens after prompt + output[:i] + forced,
    up to ``max_new_tokens``, an end-of-sequence token (kept) or ``stop(tokens)``, as
    :func:`lm_eval_lrp.locate.decoding.greedy_after` gives them one position at a time."""
    device = input_device(model)
    lengths = [n_prompt + i for i, _ in rows]
    past, mask = _left_padded(cache, lengths)
    mask = mask.to(device)
    positions = torch.tensor(lengths, device=device).unsqueeze(-1)
    name = cache_keyword(model)
    out_rows: list[list[int]] = [[] for _ in rows]
    done = [int(t) in eos_ids for _, t in rows]
    tokens = torch.tensor([[int(t)] for _, t in rows], device=device)
    ones = torch.ones((len(rows), 1), dtype=mask.dtype, device=device)
    with torch.no_grad():
        for step in range(max_new_tokens):
            if all(done):
                break
            mask = torch.cat([mask, ones], dim=-1)
            out = model(input_ids=tokens, attention_mask=mask, position_ids=positions + step, use_cache=True,
                        **{name: past})
            past = cache_of(out)
            nxt = out.logits[:, -1].argmax(-1)
            extend_greedy(out_rows, done, nxt, eos_ids, stop)
            tokens = nxt.unsqueeze(-1)
    return out_rows
