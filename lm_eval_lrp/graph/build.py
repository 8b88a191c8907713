"""Build an attribution graph from one contrastive LRP backward, streaming one block at a time.

The layerwise backward (:mod:`lm_eval_lrp.lrp.layerwise`) visits blocks top to bottom with the block's graph
alive; for block ``l`` the two transitions ``(l-1).out -> l.mid`` (attention) and ``l.mid -> l.out`` (MLP) are
computed for the target tokens with ``|R_t(j)| >= node_threshold``, pruned at once, and only the kept edges
are stored. Memory: the stored block inputs plus one block's graph plus one transition's [n', T] rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..lrp.arch import architecture_of
from ..lrp.composite import Composite
from ..lrp.dispatch import input_device
from ..lrp.memory import free_bytes
from ..lrp.model_io import as_ids
from ..lrp.target import Contrast
from ..lrp.layerwise import BlockStep, backward_blocks, decoder_layers, objective_gradient, record_forward
from . import attention as A
from . import edges as E
from .model import Graph, layer_names
from .prune import canonical_order, parse_prune, reachable_subgraph, select_edges

log = logging.getLogger("lm_eval_lrp")

METHODS = ("auto", "closed", "batched", "packed", "naive")
MLP_METHODS = ("diagonal", "batched", "packed", "naive")


def available_memory(model: nn.Module | None = None) -> int:
    """Bytes free for new tensors on the model's device (the CPU when no model is given)."""
    device = input_device(model) if model is not None else "cpu"
    return free_bytes(device)


def auto_batch_size(model: nn.Module, T: int, n_targets: int, *, fraction: float = 0.25, cap: int = 256) -> int:
    """Seeds per backward from free memory: each seed costs about one block's activations (gradients) at length T."""
    cfg = model.config
    d = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", 1024)
    inter = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * d
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", 16)
    per_seed = 4 * T * (12 * d + 4 * inter + 3 * heads * T)
    b = int(available_memory(model) * fraction) // max(per_seed, 1)
    return int(max(1, min(n_targets, cap, b)))


def auto_chunk(T: int, *, fraction: float = 0.25) -> int:
    """Query rows per step of the closed form (about 8 [rows, T] float32 buffers live)."""
    return int(max(16, min(4096, int(available_memory() * fraction) // (32 * max(T, 1)))))


@dataclass
class Transition:
    """Edges of one transition for its target tokens: dense rows ``A[targets, :]`` or the diagonal values."""

    source_index: int
    target_index: int
    kind: str  # "attn" | "mlp"
    targets: torch.Tensor  # [n'] token indices, ascending
    rows: torch.Tensor | None  # [n', T] or None when diagonal
    diag: torch.Tensor | None  # [n'] A[j, j] (mlp shortcut)
    method: str
    T: int

    def dense(self) -> torch.Tensor:
        out = torch.zeros(self.T, self.T, dtype=torch.float32)
        if self.rows is not None:
            out[self.targets] = self.rows.float()
        else:
            out[self.targets, self.targets] = self.diag.float()
        return out

    def weights(self) -> torch.Tensor:
        return self.rows if self.rows is not None else self.diag

    def edges(self, flat_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(target token, source token, weight) of the given indices into :meth:`weights` (flattened)."""
        if self.rows is not None:
            r, c = torch.div(flat_index, self.T, rounding_mode="floor"), flat_index % self.T
            return self.targets[r], c, self.rows.reshape(-1)[flat_index].float()
        return self.targets[flat_index], self.targets[flat_index], self.diag[flat_index].float()


@dataclass
class GraphRun:
    """What :func:`compute_transitions` returns besides the transitions it streamed to the consumer."""

    delta: float
    target: int
    contrast: int | None
    position: int
    layers: list[str]
    node_relevance: torch.Tensor  # [len(layers), T]
    input_relevance: torch.Tensor  # [T]
    methods: dict  # transition kind -> methods used (counts)
    n_targets: dict  # source layer index -> number of target tokens computed (n')
    fallbacks: dict = field(default_factory=dict)  # cause -> transitions computed another way because of it


def _applied_rules(composite: Composite) -> dict[int, object]:
    modules = dict(composite.model.named_modules())
    return {id(modules[name]): rule for name, rule in composite.applied.items()}


def _targets(r: torch.Tensor, threshold: float | None) -> torch.Tensor:
    if threshold is None or threshold <= 0:
        return torch.arange(r.numel())
    return torch.nonzero(r.abs() >= threshold).reshape(-1)


def compute_transitions(
    model: nn.Module,
    token_ids,
    position: int,
    target: int | None,
    contrast: int | None,
    consumer: Callable[[Transition], None],
    *,
    rule: str = "attnlrp",
    node_threshold: float | None = 0.01,
    method: str = "auto",
    mlp: str = "diagonal",
    batch_size: int | None = None,
) -> GraphRun:
    """One layerwise contrastive backward; each block's two transitions are handed to ``consumer`` (top down)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    if mlp not in MLP_METHODS:
        raise ValueError(f"mlp must be one of {MLP_METHODS}")
    device = input_device(model)  # offloaded embeddings: where they compute, not their empty (meta) weight
    ids = as_ids(token_ids, device)
    T = ids.numel()
    if not -T <= position < T:
        raise IndexError(f"position {position} outside a sequence of {T} tokens")
    pos = position % T
    arch = architecture_of(model)
    if mlp == "diagonal" and not arch.mlp_is_token_wise(model):
        mlp = "packed"  # e.g. GPT-NeoX's parallel residual: attention and MLP read the same input
    used: dict[str, dict[str, int]] = {"attn": {}, "mlp": {}}
    fallbacks: dict[str, int] = {}
    n_targets: dict[int, int] = {}

    def bsize(n):
        return batch_size or auto_batch_size(model, T, n)

    with Composite(model, rule, arch) as composite:
        applied = _applied_rules(composite)
        record = record_forward(model, ids, arch)
        g_final, extras = objective_gradient(model, arch, record.final, pos, target, contrast)
        n_layers = len(record.inputs)

        def on_block(step: BlockStep):
            l = step.index
            mid_module = step.layer.get_submodule(arch.mid)
            out_value = record.hidden(l + 1)
            r_out = (out_value[0].float() * step.g_out[0].float()).sum(-1)
            r_mid = (step.mid.detach()[0].float() * step.g_mid[0].float()).sum(-1)

            # attention half: x -> mid (first: the closed form reuses this block's recorded attention call)
            tg = _targets(r_mid, node_threshold)
            rows, how = None, method
            if method in ("auto", "closed"):
                rows = A.closed_form_attention_rows(
                    model, step.layer, mid_module, step.x.detach(), step.args, step.kwargs, step.g_mid, tg, applied,
                    chunk=auto_chunk(T), captured=capture.pop(step.layer, step.mid) if capture else None,
                )
                how = "closed"
                if rows is None and method == "closed":
                    raise NotImplementedError(f"no closed form for the attention of block {l} ({type(step.layer).__name__})")
            if rows is None and method in ("auto", "batched"):
                try:
                    rows = E.batched_rows(step.x, step.mid, step.g_mid, tg, bsize(tg.numel()))
                    how = "batched"
                except (RuntimeError, NotImplementedError) as err:  # e.g. an op without a vmap (batching) rule
                    if method == "batched":
                        raise
                    cause = f"packed graph rows because the batched backward failed: {type(err).__name__}: {str(err)[:160]}"
                    if cause not in fallbacks:
                        log.warning("lm-eval-lrp: attribution graph: %s", cause)
                    fallbacks[cause] = fallbacks.get(cause, 0) + 1
                    rows = None
            if rows is None and method in ("auto", "packed"):
                rows = E.packed_rows(step.layer, mid_module, step.x, step.args, step.kwargs, "attn", step.g_mid, tg, bsize(tg.numel()))
                how = "packed"
            if rows is None and method == "naive":
                rows = E.naive_rows(step.layer, mid_module, step.x, step.args, step.kwargs, "attn", step.g_mid, tg)
                how = "naive"
            used["attn"][how] = used["attn"].get(how, 0) + 1
            n_targets[2 * l] = int(tg.numel())
            consumer(Transition(2 * l, 2 * l + 1, "attn", tg, rows, None, how, T))

            # MLP half: mid -> out
            tg = _targets(r_out, node_threshold)
            rows = diag = None
            how = mlp
            if mlp == "diagonal":
                diag = E.mlp_diagonal_rows(r_mid, tg)
            elif mlp == "batched":
                rows = E.batched_rows(step.mid, step.out, step.g_out, tg, bsize(tg.numel()))
            elif mlp == "packed":
                rows = E.packed_rows(step.layer, mid_module, step.x, step.args, step.kwargs, "mlp", step.g_out, tg, bsize(tg.numel()))
            else:
                rows = E.naive_rows(step.layer, mid_module, step.x, step.args, step.kwargs, "mlp", step.g_out, tg)
            used["mlp"][how] = used["mlp"].get(how, 0) + 1
            n_targets[2 * l + 1] = int(tg.numel())
            consumer(Transition(2 * l + 1, 2 * l + 2, "mlp", tg, rows, diag, how, T))

        capture = A.AttentionCapture(model, decoder_layers(model, arch)) if method in ("auto", "closed") else None
        if capture is not None:
            with capture:
                g_embed, node_rel = backward_blocks(model, record, g_final, arch=arch, on_block=on_block)
        else:
            g_embed, node_rel = backward_blocks(model, record, g_final, arch=arch, on_block=on_block)
        input_rel = (record.emb[0].float() * g_embed[0].float()).sum(-1)
    return GraphRun(
        delta=extras["delta"],
        target=extras["target"],
        contrast=None if contrast is None else int(contrast),
        position=pos,
        layers=layer_names(n_layers),
        node_relevance=node_rel,
        input_relevance=input_rel,
        methods=used,
        n_targets=dict(sorted(n_targets.items())),
        fallbacks=fallbacks,
    )


def transition_matrices(model, token_ids, position, target, contrast, **kw) -> tuple[GraphRun, dict[str, torch.Tensor]]:
    """Dense ``A`` [T, T] of every transition, keyed by source layer name (tests, small T only)."""
    dense: dict[int, torch.Tensor] = {}
    run = compute_transitions(model, token_ids, position, target, contrast, lambda t: dense.__setitem__(t.source_index, t.dense()), **kw)
    return run, {run.layers[i]: a for i, a in sorted(dense.items())}


def build_full_graph(
    model: nn.Module,
    token_ids,
    position: int = -1,
    target: int | None = None,
    contrast: int | None = None,
    *,
    rule: str = "attnlrp",
    node_threshold: float | None = 0.01,
    prune=("mass", 0.85),
    batch_size: int | None = None,
    method: str = "auto",
    mlp: str = "diagonal",
    tokens: list[str] | None = None,
    record: dict | None = None,
) -> Graph:
    """The whole graph, each transition pruned as it streams by (``prune=None``: every non-zero edge kept).
    ``token_ids`` may be a :class:`~lm_eval_lrp.lrp.target.Contrast` (then leave position, target, contrast out)."""
    prune = parse_prune(prune)
    c = Contrast.of(token_ids, position, target, contrast)
    token_ids, position, target, contrast = list(c.ids), c.position, c.target, c.contrast
    ids = list(c.ids)
    T = len(ids)
    kept_src, kept_tgt, kept_w, stats = [], [], [], {}

    def consume(tr: Transition):
        keep, st = select_edges(tr.weights(), prune)
        tgt_tok, src_tok, w = tr.edges(keep)
        kept_src.append(tr.source_index * T + src_tok)
        kept_tgt.append(tr.target_index * T + tgt_tok)
        kept_w.append(w)
        stats[tr.source_index] = st

    run = compute_transitions(
        model, ids, position, target, contrast, consume,
        rule=rule, node_threshold=node_threshold, method=method, mlp=mlp, batch_size=batch_size,
    )
    layers = run.layers
    transitions = [
        {"source_layer": layers[i], "target_layer": layers[i + 1], **stats[i]} for i in range(len(layers) - 1)
    ]
    src = torch.cat(kept_src) if kept_src else torch.zeros(0, dtype=torch.long)
    tgt = torch.cat(kept_tgt) if kept_tgt else torch.zeros(0, dtype=torch.long)
    w = torch.cat(kept_w) if kept_w else torch.zeros(0)
    order = canonical_order(src, tgt, len(layers) * T)
    src, tgt, w = src[order], tgt[order], w[order]
    final_key = (len(layers) - 1) * T + run.position
    keys = torch.unique(torch.cat([src, tgt, torch.tensor([final_key])]))
    rel = run.node_relevance.reshape(-1)[keys].float()
    meta = {
        "record": ({"task": record.get("task"), "doc_id": record.get("doc_id")} if record else None),
        "rule": rule,
        "delta": run.delta,
        "node_threshold": node_threshold,
        "prune": {"mode": prune[0], "value": prune[1]} if prune else None,
        "final_node": f"{layers[-1]}@{run.position}",
    }
    if run.fallbacks:
        meta["fallbacks"] = dict(run.fallbacks)
    graph = Graph(
        layers=layers,
        tokens=list(tokens) if tokens is not None else [str(i) for i in ids],
        node_keys=keys,
        node_relevance=rel,
        edge_source=src,
        edge_target=tgt,
        edge_weight=w.float(),
        transitions=transitions,
        meta=meta,
        inputs={"token_ids": ids, "position": run.position, "target": run.target, "contrast": run.contrast},
        run=run,
    )
    return graph


def build_graph(
    model: nn.Module,
    token_ids,
    position: int = -1,
    target: int | None = None,
    contrast: int | None = None,
    *,
    rule: str = "attnlrp",
    node_threshold: float = 0.01,
    prune=("mass", 0.85),
    batch_size: int | None = None,
    method: str = "auto",
    tokens: list[str] | None = None,
    record: dict | None = None,
) -> Graph:
    """The pruned attribution graph of one explained prediction, restricted to the nodes reaching the final node.

    ``prune``: ``("mass", p)`` / ``("threshold", τ)`` / ``"mass:0.85"`` / None. ``batch_size``: seeds per
    backward where a transition needs backward passes (None: from free memory). ``tokens``: token strings
    for the JSON; ``record``: the attribution record (its task and doc_id go into ``meta.record``).
    """
    full = build_full_graph(
        model, token_ids, position, target, contrast, rule=rule, node_threshold=node_threshold, prune=prune,
        batch_size=batch_size, method=method, tokens=tokens, record=record,
    )
    return reachable_subgraph(full)
