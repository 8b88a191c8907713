"""Greedy continuations after forced tokens, batched, from the KV cache of the shared prefix.

The scan's forward over prompt + output keeps its KV cache; the prefix before output position i is a slice of it
(no recomputation), and the alternatives forced at i share that prefix, so they run as one batch with no padding.
Layers whose cache is not a plain full-attention cache (sliding windows) get the prefix recomputed instead.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from ..lrp.dispatch import input_device


def cache_of(out):
    """The KV cache of a forward's output (``cache`` since transformers 5.2x, ``past_key_values`` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def cache_keyword(model) -> str:
    """The keyword under which the model's forward takes a KV cache (``cache`` since transformers 5.2x,
    ``past_key_values`` before)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def run_cached(model, tokens: torch.Tensor, cache):
    """One forward continuing ``cache`` (whichever keyword this transformers version names it)."""
    return model(input_ids=tokens, use_cache=True, **{cache_keyword(model): cache})


def extend_greedy(rows: list[list[int]], done: list[bool], nxt: torch.Tensor, eos_ids, stop) -> None:
    """One greedy step of a batch: each row not yet done takes its token ``nxt[b]``; it is done after an
    end-of-sequence token (kept) or when ``stop(row)`` says so."""
    for b, t in enumerate(nxt.tolist()):
        if done[b]:
            continue
        rows[b].append(t)
        if t in eos_ids or (stop is not None and stop(rows[b])):
            done[b] = True


def prefix_cache(model, full_cache, ids: Sequence[int], length: int, batch: int):
    """A new cache holding the first ``length`` positions of ``ids`` for ``batch`` sequences."""
    layers = getattr(full_cache, "layers", None)
    if layers and all(type(layer) is DynamicLayer and layer.keys is not None for layer in layers):
        data = [(layer.keys[:, :, :length].expand(batch, -1, -1, -1), layer.values[:, :, :length].expand(batch, -1, -1, -1))
                for layer in layers]
        return DynamicCache(ddp_cache_data=data)
    device = input_device(model)
    prefix = torch.tensor([list(ids[:length])] * batch, device=device)
    with torch.no_grad():
        return cache_of(model(input_ids=prefix, use_cache=True))


def greedy_after(model, cache, forced: Sequence[int], max_new_tokens: int, eos_ids=frozenset(),
                 stop: Callable[[list[int]], bool] | None = None) -> list[list[int]]:
    """For each forced token (one batch row each, all after the same cached prefix): the greedy tokens that follow
    it, up to ``max_new_tokens``, an end-of-sequence token (kept) or ``stop(tokens)`` (True: stop here)."""
    device = input_device(model)
    rows = [[] for _ in forced]
    done = [int(t) in eos_ids for t in forced]
    tokens = torch.tensor([[int(t)] for t in forced], device=device)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            if all(done):
                break
            out = run_cached(model, tokens, cache)
            cache = cache_of(out)
            nxt = out.logits[:, -1].argmax(-1)
            extend_greedy(rows, done, nxt, eos_ids, stop)
            tokens = nxt.unsqueeze(-1)
    return rows


def greedy_fresh(model, ids: Sequence[int], max_new_tokens: int, eos_ids=frozenset()) -> list[int]:
    """Reference decoding: one full forward per step, no cache (for checks)."""
    device = input_device(model)
    seq, out = list(ids), []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            t = int(model(input_ids=torch.tensor([seq], device=device), use_cache=False).logits[0, -1].argmax())
            out.append(t)
            seq.append(t)
            if t in eos_ids:
                break
    return out
