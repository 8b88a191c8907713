"""Faithfulness of an input attribution: deletion curves of the explained logit difference.

Engine-side (no lm-eval import). For one case (``ids``, ``position``, ``target``, ``contrast``) the explained scalar
is Δℓ = ℓ(target) − ℓ(contrast) of the next token after ``ids[position]`` (target = the wrong token the model
preferred, contrast = the correct one). An attribution ranks the context tokens by their relevance towards the
wrong token (most positive first). The deletion curve removes the k highest-ranked tokens, k = 0, 1, 2, 4, ...,
and records Δℓ after each removal. A ranking that found what drives the wrong preference makes Δℓ fall fast.

Removal (``method``)
--------------------
``"mask"`` (default): the removed positions get ``attention_mask = 0``; the token ids and the position ids stay
where they were (``position_ids = arange(T)`` is passed explicitly, so no position shifts and RoPE/absolute
positions of the remaining tokens are unchanged). A 2-D ``[B, T]`` mask with zeros in the middle is honoured by
Hugging Face models (transformers 5: the padding mask is combined with the causal mask per key; checked for
Llama with both the ``eager`` and ``sdpa`` attention in ``tests/test_faithfulness.py``): masking key j is exactly
deleting token j from the sequence while keeping the other tokens' position ids, and an all-ones mask reproduces
the plain forward. The removed token's own row is still computed but no other row can read it.
``"replace"``: the removed tokens are replaced by the model's pad token id (``config.pad_token_id``);
``"replace:<id>"`` replaces them by the given token id (e.g. a tokenizer's id for a space). The attention mask stays
all ones.

Candidates
----------
Tokens after ``position`` cannot influence the explained logits and are dropped. Candidates for removal are the
positions ``0 .. n_candidates-1`` (default: every position up to ``position``), always without the explained
position itself (the query row; removing it would change what is being explained) and without index 0 when it is
the model's BOS token (``config.bos_token_id``): the BOS token is an attention sink, masking it mostly measures
the model's breakdown rather than the evidence (the paper also leaves special tokens out of heatmap
normalisation). Pass ``n_candidates`` to restrict removal to e.g. the prompt tokens.

Steps and area
--------------
``steps``: None → k = 0, 1, 2, 4, ... (powers of two) up to the cap min(64, number of candidates), the cap itself
always the last point; an int → the same with that cap; a list → exactly those k (0 is added). The **area** of a
curve is the mean of Δℓ(k)/Δℓ(0) over its points (k = 0 included, so it is 1 for a flat curve; below 1 when
removals lower Δℓ; negative when they flip the preference to the correct token). **Smaller is better**: the
ranking found what drives the wrong preference faster. The points are geometric in k, so the first removals weigh
most, which is what a top-k heatmap reader relies on. The area is None when Δℓ(0) ≤ 0 (nothing wrong to explain).

:func:`faithfulness` compares the given relevance (AttnLRP or CP-LRP, named by ``rule``) with the other LRP rule,
gradient × input and a seeded random order; all forward passes of all curves run under ``torch.no_grad`` in batches
of masks (the shared k = 0 point once).

Flip count
----------
The paper's measure (App. G): the number of top-ranked tokens that must be masked, one more at a time, before the
model's preference flips to the contrast token (Δℓ ≤ 0); :func:`flip_count`, per order in :func:`faithfulness`
(``flip``), None when it does not flip within ``flip_max`` removals.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

import torch
from torch import nn

from .lrp.baselines import gradient_x_input
from .lrp.dispatch import input_device
from .lrp.explain import explain
from .lrp.model_io import backbone, head_logits

__all__ = ["deletion_curve", "faithfulness", "flip_count", "candidate_positions", "default_steps", "curve_area"]

DEFAULT_CAP = 64
TOKEN_BUDGET = 16384  # tokens per batched forward (rows = budget // T, at least 1)


# ----------------------------------------------------------------------------- helpers


def _ids_1d(ids) -> torch.Tensor:
    t = torch.as_tensor(ids, dtype=torch.long)
    if t.dim() == 2 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError("ids must be a non-empty 1-D sequence of token ids")
    return t


def _bos_ids(model: nn.Module) -> set[int]:
    bos = getattr(model.config, "bos_token_id", None)
    if bos is None:
        return set()
    return {int(b) for b in bos} if isinstance(bos, (list, tuple)) else {int(bos)}


def _prepare(model, ids, position) -> tuple[torch.Tensor, int]:
    ids = _ids_1d(ids)
    T = ids.numel()
    if not -T <= position < T:
        raise IndexError(f"position {position} outside a sequence of {T} tokens")
    pos = position % T
    return ids[: pos + 1], pos


def candidate_positions(model: nn.Module, ids, position: int, n_candidates: int | None = None) -> list[int]:
    """Positions that may be removed (see the module docstring)."""
    ids, pos = _prepare(model, ids, position)
    n = pos + 1 if n_candidates is None else max(0, min(int(n_candidates), pos + 1))
    skip_bos = int(ids[0]) in _bos_ids(model)
    return [i for i in range(n) if i != pos and not (i == 0 and skip_bos)]


def default_steps(n: int, cap: int | None = None) -> list[int]:
    """0, 1, 2, 4, ... up to ``min(cap, n)`` (cap default 64), the cap itself always included."""
    top = min(DEFAULT_CAP if cap is None else int(cap), n)
    ks, k = [0], 1
    while k <= top:
        ks.append(k)
        k *= 2
    if top > 0 and ks[-1] != top:
        ks.append(top)
    return ks


def _steps(steps, n: int) -> list[int]:
    if steps is None or isinstance(steps, int):
        return default_steps(n, steps)
    ks = sorted({0, *(min(max(int(k), 0), n) for k in steps)})
    return ks


def curve_area(curve: Sequence[float]) -> float | None:
    """Mean of Δℓ(k)/Δℓ(0) over the curve's points; None when Δℓ(0) ≤ 0 or a point is not finite."""
    if not curve or not all(math.isfinite(c) for c in curve) or curve[0] <= 0:
        return None
    return float(sum(c / curve[0] for c in curve) / len(curve))


def _replacement_id(model: nn.Module, method: str) -> int | None:
    if method == "mask":
        return None
    if method.startswith("replace:"):
        return int(method.split(":", 1)[1])
    if method == "replace":
        pad = getattr(model.config, "pad_token_id", None)
        if pad is None:
            raise ValueError("method='replace': the model config has no pad_token_id; use 'replace:<token id>'")
        return int(pad[0] if isinstance(pad, (list, tuple)) else pad)
    raise ValueError(f"method {method!r}: use 'mask', 'replace' or 'replace:<token id>'")


def _deltas(model: nn.Module, ids: torch.Tensor, pos: int, target: int, contrast: int | None,
            removed: list[list[int]], method: str) -> list[float]:
    """Δℓ at ``pos`` for each set of removed positions, in batches under no_grad."""
    device = input_device(model)  # offloaded embeddings: where they compute, not their empty (meta) weight
    T = ids.numel()
    fill = _replacement_id(model, method)
    rows = max(1, TOKEN_BUDGET // T)
    out: list[float] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(removed), rows):
                chunk = removed[start : start + rows]
                B = len(chunk)
                batch_ids = ids.to(device).unsqueeze(0).repeat(B, 1)
                mask = torch.ones(B, T, dtype=torch.long, device=device)
                for b, rem in enumerate(chunk):
                    if rem:
                        idx = torch.as_tensor(rem, dtype=torch.long, device=device)
                        if fill is None:
                            mask[b, idx] = 0
                        else:
                            batch_ids[b, idx] = fill
                position_ids = torch.arange(T, device=device).unsqueeze(0).repeat(B, 1)
                hidden = backbone(model)(input_ids=batch_ids, attention_mask=mask, position_ids=position_ids,
                                          use_cache=False).last_hidden_state[:, pos]
                logits = head_logits(model, hidden, [int(target)] + ([int(contrast)] if contrast is not None else [])).float()
                d = logits[:, 0] - (logits[:, 1] if contrast is not None else 0.0)
                out.extend(float(x) for x in d.cpu())
    finally:
        model.train(was_training)
    return out


def _clean(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _ranking(relevance, candidates: list[int]) -> list[int]:
    """Candidates by relevance, most positive (towards the wrong token) first; ties by position."""
    rel = torch.as_tensor(relevance, dtype=torch.float64).reshape(-1)
    vals = {i: float(rel[i]) if math.isfinite(float(rel[i])) else -math.inf for i in candidates}
    return sorted(candidates, key=lambda i: (-vals[i], i))


def _plan(order: Sequence[int], candidates: list[int], steps) -> tuple[list[int], list[int]]:
    """(order restricted to the candidates, without repeats; the steps k)."""
    allowed, seen, kept = set(candidates), set(), []
    for i in order:
        i = int(i)
        if i in allowed and i not in seen:
            kept.append(i)
            seen.add(i)
    return kept, _steps(steps, len(kept))


# ----------------------------------------------------------------------------- API


def deletion_curve(model: nn.Module, ids, position: int, target: int, contrast: int | None, order: Sequence[int], *,
                   steps=None, n_candidates: int | None = None, method: str = "mask") -> dict:
    """Δℓ after removing the first k positions of ``order`` (most relevant first), for each k in ``steps``.

    ``order`` lists positions; those that are not candidates (see the module docstring) are dropped, and the cap
    of the default steps is min(64, len(order after dropping)). Returns a JSON-ready dict with ``steps``, ``curve``
    (Δℓ per step, the first at k = 0 is the model's own Δℓ), ``removed`` (the positions removed at the last step),
    ``n_candidates`` and ``area`` (see :func:`curve_area`).
    """
    ids, pos = _prepare(model, ids, position)
    candidates = candidate_positions(model, ids, pos, n_candidates)
    kept, ks = _plan(order, candidates, steps)
    curve = _deltas(model, ids, pos, target, contrast, [kept[:k] for k in ks], method)
    return {
        "method": method,
        "steps": ks,
        "curve": [_clean(c) for c in curve],
        "removed": kept[: ks[-1]],
        "n_candidates": len(candidates),
        "area": curve_area(curve),
    }


def flip_count(model: nn.Module, ids, position: int, target: int, contrast: int | None, order: Sequence[int], *,
               n_candidates: int | None = None, max_k: int = 32, method: str = "mask", batch: int = 8) -> int | None:
    """The paper's flip count: how many tokens of ``order`` (most relevant first) must be removed, one more at a
    time, before the preference flips (Δℓ ≤ 0, the contrast token is preferred). None when it has not flipped after
    ``max_k`` removals (or there is nothing to remove). Evaluated in batches of ``batch`` removal sets, stopping at
    the first batch that flips."""
    ids, pos = _prepare(model, ids, position)
    kept, _ = _plan(order, candidate_positions(model, ids, pos, n_candidates), [0])
    top = min(max_k, len(kept))
    for start in range(1, top + 1, batch):
        ks = list(range(start, min(start + batch, top + 1)))
        deltas = _deltas(model, ids, pos, target, contrast, [kept[:k] for k in ks], method)
        for k, d in zip(ks, deltas):
            if math.isfinite(d) and d <= 0:
                return k
    return None


LRP_RULES = ("attnlrp", "cp")


def faithfulness(model: nn.Module, ids, position: int, target: int, contrast: int | None, relevance, *,
                 n_candidates: int | None = None, seed=0, steps=None, method: str = "mask", rule: str = "attnlrp",
                 flips: bool = True, flip_max: int = 32) -> dict:
    """Deletion curves and flip counts of the given ``relevance`` (computed with LRP rule ``rule``: ``"attnlrp"`` or
    ``"cp"``), of the other LRP rule, of gradient × input and of a random order (``seed``).

    Returns ``{"method", "rule", "steps", "curves": {name: [Δℓ...]}, "area": {name: float|None},
    "beats": {other: bool|None}, "attnlrp_beats": {...}, "flip": {name: int|None}, "flip_max", "delta",
    "n_candidates"}`` (JSON-ready). ``beats[x]`` is True when the given relevance's area is strictly smaller than
    x's (None if undefined); ``attnlrp_beats`` is the same for the AttnLRP curve (given or computed). ``flip[name]``:
    tokens masked in that order until the preference flips (the paper's App. G), None if not within ``flip_max``.
    """
    if rule not in LRP_RULES:
        raise ValueError(f"rule {rule!r}: use one of {LRP_RULES}")
    ids, pos = _prepare(model, ids, position)
    rel = torch.as_tensor(relevance, dtype=torch.float32).reshape(-1)
    if rel.numel() < pos + 1:
        raise ValueError(f"relevance has {rel.numel()} values for a context of {pos + 1} tokens")
    rel = rel[: pos + 1]
    candidates = candidate_positions(model, ids, pos, n_candidates)
    other = "cp" if rule == "attnlrp" else "attnlrp"
    scores = {
        rule: rel,
        "grad_x_input": gradient_x_input(model, ids, pos, target, contrast),
        other: explain(model, ids, pos, target, contrast, rule=other, nodes=False, topk=1).input_relevance,
    }
    orders = {name: _ranking(s, candidates) for name, s in scores.items()}
    shuffled = list(candidates)
    random.Random(seed).shuffle(shuffled)
    orders["random"] = shuffled
    ks = _steps(steps, len(candidates))

    # one batched pass over every distinct removal set (k = 0 is shared by all curves)
    sets: dict[tuple[int, ...], int] = {}
    for order in orders.values():
        for k in ks:
            sets.setdefault(tuple(sorted(order[:k])), len(sets))
    keys = list(sets)
    values = _deltas(model, ids, pos, target, contrast, [list(s) for s in keys], method)
    curves = {name: [values[sets[tuple(sorted(order[:k]))]] for k in ks] for name, order in orders.items()}
    area = {name: curve_area(c) for name, c in curves.items()}

    def beats(mine: str, versus: str):
        a, b = area[mine], area[versus]
        return None if a is None or b is None else bool(a < b)

    out = {
        "method": method,
        "rule": rule,
        "steps": ks,
        "curves": {name: [_clean(x) for x in c] for name, c in curves.items()},
        "area": area,
        "beats": {x: beats(rule, x) for x in ("grad_x_input", "random", other)},
        "attnlrp_beats": {x: beats("attnlrp", x) for x in ("grad_x_input", "random", "cp")},
        "delta": _clean(curves[rule][0]),
        "n_candidates": len(candidates),
        "seed": seed if isinstance(seed, (int, str)) else repr(seed),
    }
    if flips:
        out["flip"] = {name: flip_count(model, ids, pos, target, contrast, order, max_k=flip_max, method=method)
                       for name, order in orders.items()}
        out["flip_max"] = flip_max
    return out
