"""Batched attribution: several contrastive explanations from one forward and one backward.

``explain_batch(model, contrasts)`` pads the sequences into one batch (attention mask and position ids), runs the
forward under the LRP rules once, and seeds one backward with Σ_b Δℓ_b. Rows never see each other (padding is
masked out of attention, the rules are row-wise), so the gradient reaching row b is that of Δℓ_b alone and every
row's relevance equals its batch-1 explanation (:func:`lm_eval_lrp.lrp.explain`) up to float rounding.

``explain_many(model, contrasts, batch_size=8 | "auto")`` is the loop around it: contrasts grouped by length
(longest first), batches sized from free memory with ``"auto"``, an out-of-memory batch halved and retried, and
every contrast answered in input order by an :class:`Explanation` or an :class:`ExplainError`.

Devices: inputs go to the input embedding's device, the explained rows to the LM head's device, node relevance is
computed where each layer lives (``device_map``/``parallelize`` models included), and everything is brought to the
CPU once per batch, after the backward; the per-row records are assembled from those CPU tensors.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch
from torch import nn

from .arch import architecture_of
from .composite import Composite
from .dispatch import input_device
from .explanation import Explanation
from .model_io import NodeRecorder, backbone, head_logits
from .memory import GraphBytes, auto_batch_size, is_oom

log = logging.getLogger("lm_eval_lrp")

PADDING_SIDES = ("right", "left")
OOM_ADVICE = ("lower --lrp_batch_size, set --lrp_max_length, or run attribution on a larger device; "
              "the evaluation's own results are not affected")


@dataclass
class ExplainError:
    """A contrast that could not be explained (its place in :func:`explain_many`'s answer)."""

    index: int
    error: str
    out_of_memory: bool = False
    advice: str = ""


# ----------------------------------------------------------------------------- phase 1: the padded batch


@dataclass
class _Batch:
    ids: torch.Tensor  # [B, T] on the embedding's device
    mask: torch.Tensor  # [B, T]
    position_ids: torch.Tensor  # [B, T]
    rows: torch.Tensor  # [B]: the explained position of each row in the padded layout
    offsets: list[int]  # where each row's tokens start in the padded layout
    lengths: list[int]


def pad_batch(model: nn.Module, contrasts: Sequence, padding_side: str) -> _Batch:
    if padding_side not in PADDING_SIDES:
        raise ValueError(f"padding_side must be one of {PADDING_SIDES}, not {padding_side!r}")
    device = input_device(model)
    lengths = [len(c) for c in contrasts]
    T = max(lengths)
    pad_id = getattr(model.config, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)
    offsets = [T - n if padding_side == "left" else 0 for n in lengths]
    ids = torch.full((len(contrasts), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(contrasts), T), dtype=torch.long)
    for b, (c, off) in enumerate(zip(contrasts, offsets)):
        ids[b, off : off + len(c)] = torch.tensor(c.ids)
        mask[b, off : off + len(c)] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # 0.. on each row's own tokens, whatever the padding side
    rows = torch.tensor([off + c.position for c, off in zip(contrasts, offsets)])
    return _Batch(ids.to(device), mask.to(device), position_ids.to(device), rows, offsets, lengths)


# ----------------------------------------------------------------------------- phase 3: the objective, per row


def _objective(model: nn.Module, contrasts: Sequence, hidden: torch.Tensor, rows: torch.Tensor, topk: int):
    """Σ_b Δℓ_b (in the graph) and, per row, the resolved targets and the values a record needs (on the device)."""
    B = len(contrasts)
    picked = hidden[torch.arange(B, device=hidden.device), rows.to(hidden.device)]  # [B, d]
    with torch.no_grad():
        full = head_logits(model, picked.detach())  # [B, V]: top-k and unresolved targets
    if any(c.target is None for c in contrasts):  # one transfer for the whole batch
        tops = full.argmax(-1).tolist()
        for b, c in enumerate(contrasts):
            if c.target is None and tops[b] == c.contrast:
                raise ValueError(f"row {b}: the model's top token is the contrast: nothing to contrast")
        contrasts = [replace(c, target=tops[b]) if c.target is None else c for b, c in enumerate(contrasts)]
    vocab = sorted({t for c in contrasts for t in c.tokens})
    where = {t: i for i, t in enumerate(vocab)}
    device = full.device
    t_col = torch.tensor([where[c.target] for c in contrasts], device=device)
    c_col = torch.tensor([where[c.contrast] if c.contrast is not None else 0 for c in contrasts], device=device)
    has_c = torch.tensor([c.contrast is not None for c in contrasts], device=device)
    with torch.enable_grad():
        chosen = head_logits(model, picked, vocab)  # [B, |vocab|]: only the explained rows of the head
    arange = torch.arange(B, device=device)
    t_logit = chosen[arange, t_col]
    c_logit = torch.where(has_c, chosen[arange, c_col], torch.zeros_like(t_logit))
    delta = t_logit - c_logit
    k = min(topk, full.shape[-1])
    top = full.float().topk(k)
    values = torch.cat([torch.stack([t_logit, c_logit, delta], -1).detach().float(), top.values,
                        top.indices.float()], -1)  # [B, 3 + 2k]: one transfer later (token ids < 2**24 are exact)
    return delta.sum(), contrasts, values, k


# ----------------------------------------------------------------------------- phase 4: one backward


def _backward(value: torch.Tensor, tensors: list) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Relevance ``[B, T]`` of the input embeddings and of each node, left on the devices where they were taken.

    Node relevance is taken by tensor hooks as the backward passes each node; the node's activation is dropped
    right after, as the graph drops its layer."""
    node_rel: list = [None] * (len(tensors) - 1)

    def keeper(i):
        def hook(g):
            node_rel[i] = (tensors[1 + i].detach().float() * g.float()).sum(-1)
            tensors[1 + i] = None

        return hook

    handles = [t.register_hook(keeper(i)) for i, t in enumerate(tensors[1:]) if t.requires_grad]
    try:
        (g,) = torch.autograd.grad(value, tensors[:1], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    emb = tensors[0]
    input_rel = torch.zeros(emb.shape[:2], device=emb.device) if g is None else (emb.detach().float() * g.float()).sum(-1)
    node_rel = [torch.zeros(emb.shape[:2], device=emb.device) if r is None else r for r in node_rel]
    return input_rel, node_rel


# ----------------------------------------------------------------------------- the batch


def explain_batch(model: nn.Module, contrasts: Sequence, *, rule: str = "attnlrp", topk: int = 5, nodes: bool = True,
                  padding_side: str = "right") -> list[Explanation]:
    """Explain each :class:`~lm_eval_lrp.lrp.target.Contrast` of ``contrasts`` with one forward and one backward.

    The answer is in the order of ``contrasts`` and equal, row by row, to ``explain(model, contrast)``. Sequences
    of different lengths are padded (``padding_side="right"`` or ``"left"``) with an attention mask and position
    ids counted on each row's own tokens. A bad contrast (token outside the vocabulary, top token = contrast) raises
    for the whole batch: :func:`explain_many` isolates it.
    """
    from .target import Contrast

    contrasts = [Contrast.of(c) for c in contrasts]
    if not contrasts:
        return []
    vocab_size = model.get_output_embeddings().weight.shape[0]
    for c in contrasts:
        c.check_vocab(vocab_size)
    arch = architecture_of(model)
    batch = pad_batch(model, contrasts, padding_side)  # 1. inputs
    start = time.perf_counter()
    with Composite(model, rule, arch), torch.enable_grad():  # 2. forward under the rules
        emb = model.get_input_embeddings()(batch.ids).detach().requires_grad_(True)
        recorder = NodeRecorder(model, arch) if nodes else None
        kwargs = dict(inputs_embeds=emb, attention_mask=batch.mask, position_ids=batch.position_ids, use_cache=False)
        if recorder is not None:
            with recorder:
                out = backbone(model)(**kwargs)
        else:
            out = backbone(model)(**kwargs)
    tensors = [emb] + (recorder.tensors if recorder is not None else [])
    node_names = recorder.names() if recorder is not None else []
    value, contrasts, values, k = _objective(model, contrasts, out.last_hidden_state, batch.rows, topk)  # 3.
    del out
    _synchronize(emb.device)
    forward_s = time.perf_counter() - start
    input_rel, node_rel = _backward(value, tensors)  # 4. one backward for every row
    del tensors, value
    input_rel = input_rel.cpu()  # 5. to the CPU, once per tensor
    node_rel = torch.stack([r.cpu() for r in node_rel]) if node_rel else torch.zeros(0, *input_rel.shape)
    values = values.cpu()
    backward_s = time.perf_counter() - start - forward_s
    return _records(contrasts, batch, input_rel, node_rel, node_names, values, k, rule,  # 6. records
                    {"forward": forward_s / len(contrasts), "backward": backward_s / len(contrasts),
                     "batch_size": len(contrasts)})


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _records(contrasts, batch: _Batch, input_rel, node_rel, node_names, values, k, rule, seconds) -> list[Explanation]:
    out = []
    rows = values.tolist()
    for b, c in enumerate(contrasts):
        lo, hi = batch.offsets[b], batch.offsets[b] + batch.lengths[b]
        t_logit, c_logit, delta = rows[b][:3]
        top_v, top_i = rows[b][3 : 3 + k], rows[b][3 + k :]
        out.append(Explanation(
            input_ids=list(c.ids),
            position=c.position,
            target_id=c.target,
            contrast_id=c.contrast,
            target_logit=t_logit,
            contrast_logit=c_logit if c.contrast is not None else None,
            delta=delta,
            input_relevance=input_rel[b, lo:hi].clone(),
            node_names=list(node_names),
            node_relevance=node_rel[:, b, lo:hi].clone(),
            rule=rule,
            topk=[(int(i), float(v)) for v, i in zip(top_v, top_i)],
            seconds=dict(seconds),
        ))
    return out


# ----------------------------------------------------------------------------- many: grouping, sizing, retries


def explain_many(model: nn.Module, contrasts: Sequence, batch_size: int | str = 8, *, rule: str = "attnlrp",
                 topk: int = 5, nodes: bool = True, padding_side: str = "right", max_batch_size: int | None = None,
                 on_result: Callable[[int, object], None] | None = None,
                 on_split: Callable[[int, str], None] | None = None) -> list:
    """Explain every contrast, several per forward and backward; the answer is in input order, one entry each.

    Each entry is an :class:`Explanation` or an :class:`ExplainError` (nothing is ever dropped). Contrasts are
    grouped by length, longest first, so that a batch pads little and an out-of-memory error comes early.
    ``batch_size`` is a number or ``"auto"``: the first (longest) contrast is explained alone while the bytes its
    graph keeps are counted per device, and each batch is then sized so that its graph fits in half the free memory
    of every device the model uses (:func:`lm_eval_lrp.lrp.memory.auto_batch_size`; at most ``max_batch_size``,
    by default 64 on a GPU and 8 on the CPU, the largest size measured there). An out-of-memory error halves the
    batch and retries it, and later batches stay at the smaller size; a contrast that fails alone becomes an
    :class:`ExplainError` (``out_of_memory=True`` when memory was the reason). Any other error in a batch retries
    its contrasts one by one, so that one bad contrast costs only itself; that is logged (once per kind of error)
    and ``on_split(batch size, "Type: message")`` is called, so that a bug of the batched path alone is counted,
    not hidden. ``on_result(index, entry)`` is called as each entry is settled (for progress or streaming records).
    """
    from .target import Contrast

    auto = batch_size == "auto"
    if not auto and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or 'auto', not {batch_size!r}")
    results: list = [None] * len(contrasts)

    def settle(i, entry):
        results[i] = entry
        if on_result is not None:
            on_result(i, entry)

    items = []
    for i, c in enumerate(contrasts):
        try:
            items.append((i, Contrast.of(c)))
        except (TypeError, ValueError, IndexError) as err:
            settle(i, ExplainError(i, f"{type(err).__name__}: {err}"))
    pending = sorted(items, key=lambda item: -len(item[1]))  # longest first
    kwargs = dict(rule=rule, topk=topk, nodes=nodes, padding_side=padding_side)
    cap = None if auto else batch_size
    per_token = None
    while auto and per_token is None and pending:  # the longest contrast alone, its graph's bytes counted per device
        meter = GraphBytes(model)
        chunk, pending = pending[:1], pending[1:]
        for (i, _), entry in zip(chunk, _run(model, chunk, kwargs, meter)):
            settle(i, entry)
        per_token = meter.per_token(len(chunk[0][1]))
    queue: list = []  # halves and singles of a failed batch, run before new batches
    said: set[str] = set()  # errors of failed batches already logged
    while queue or pending:
        if not queue:
            size = cap if cap is not None else auto_batch_size(model, per_token, len(pending[0][1]), max_batch_size)
            queue, pending = [pending[:size]], pending[size:]
        chunk = queue.pop(0)
        if cap is not None and len(chunk) > cap:  # queued before a later halving
            queue[:0] = [chunk[i : i + cap] for i in range(0, len(chunk), cap)]
            continue
        entries = _run(model, chunk, kwargs)
        if entries is _SPLIT_OOM:
            half = len(chunk) // 2
            cap = half if cap is None else min(cap, half)
            queue[:0] = [chunk[:half], chunk[half:]]
        elif isinstance(entries, _SplitError):
            if entries.message not in said:
                said.add(entries.message)
                log.warning("a batch of %d failed (%s); its contrasts are explained one by one", len(chunk), entries.message)
            if on_split is not None:
                on_split(len(chunk), entries.message)
            queue[:0] = [[item] for item in chunk]
        else:
            for (i, _), entry in zip(chunk, entries):
                settle(i, entry)
    return results


_SPLIT_OOM = object()


@dataclass(frozen=True)
class _SplitError:
    """A batch failed with another error than out of memory: its contrasts are retried one by one."""

    message: str


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _run(model, chunk, kwargs, meter: "GraphBytes | None" = None):
    """The chunk's entries, or a sentinel saying how to split it."""
    contrasts = [c for _, c in chunk]
    try:
        if meter is None:
            return explain_batch(model, contrasts, **kwargs)
        with meter:
            return explain_batch(model, contrasts, **kwargs)
    except Exception as err:  # noqa: BLE001 - every contrast ends as an entry
        oom, message = is_oom(err), f"{type(err).__name__}: {err}"
    if oom:  # out of the except block: the failed batch's tensors are unreachable now, and can be freed
        free_memory()
        if len(chunk) > 1:
            return _SPLIT_OOM
        return [ExplainError(chunk[0][0], "out of memory", out_of_memory=True, advice=OOM_ADVICE)]
    if len(chunk) > 1:
        return _SplitError(message[:200])
    return [ExplainError(chunk[0][0], message)]
