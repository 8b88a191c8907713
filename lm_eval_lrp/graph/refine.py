"""Coarse-to-fine: neuron-level relevance inside a chosen (pruned) subgraph, without a neuron-level graph.

For a node (t, j) the neuron relevance of hidden dimension k is ``R_t(j, k) = h_t[j,k] · g_t[j,k]`` (it sums over
k to the node relevance). For each of the node's top dimensions, one seed ``g_t[j,k] · e_k`` at row j is sent back
through the transition into the node (all of a node's dimensions in one vmapped backward of one block), giving
``C[i, k'] = h_s[i,k'] · ∂(h_t[j,k] g_t[j,k])/∂h_s[i,k']``: the upstream dimensions k' of the node's in-neighbours i
that feed dimension k. By linearity, summed over all k of the node, ``Σ_k' C[i, k']`` is the edge ``A[j, i]``.
Cost: one layerwise LRP backward plus one small batched backward per refined node.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..lrp.arch import architecture_of
from ..lrp.composite import Composite
from ..lrp.dispatch import input_device
from ..lrp.model_io import as_ids
from ..lrp.layerwise import BlockStep, backward_blocks, objective_gradient, record_forward
from .model import Graph

log = logging.getLogger("lm_eval_lrp")


def _dim_contributions(src: torch.Tensor, tgt: torch.Tensor, g_t: torch.Tensor, j: int, dims: list[int],
                       fallbacks: dict[str, int]) -> torch.Tensor:
    """[K, T, d]: contributions of every source (token, dim) to dimension ``dims[b]`` of target row ``j``; a
    vmapped backward that fails is redone one seed at a time, its cause counted in ``fallbacks``."""
    K = len(dims)
    seeds = torch.zeros((K,) + tuple(tgt.shape), dtype=tgt.dtype)
    for b, k in enumerate(dims):
        seeds[b, 0, j, k] = g_t[0, j, k]
    try:
        (grads,) = torch.autograd.grad(tgt, [src], grad_outputs=seeds, retain_graph=True, is_grads_batched=True)
    except (RuntimeError, NotImplementedError) as err:  # no vmap rule somewhere: one seed at a time
        cause = f"one seed at a time because the vmapped backward failed: {type(err).__name__}: {str(err)[:160]}"
        if cause not in fallbacks:
            log.warning("lm-eval-lrp: refine: %s", cause)
        fallbacks[cause] = fallbacks.get(cause, 0) + 1
        grads = torch.stack([torch.autograd.grad(tgt, [src], grad_outputs=s, retain_graph=True)[0] for s in seeds])
    return src.detach()[0].float().unsqueeze(0) * grads[:, 0].float()


def default_nodes(graph: Graph, max_nodes: int = 12) -> list[str]:
    """The graph's ``max_nodes`` nodes of largest |relevance| (the final node first)."""
    order = torch.argsort(graph.node_relevance.abs(), descending=True, stable=True).tolist()
    ids = [graph.final_node] + [graph.node_id(int(graph.node_keys[i])) for i in order]
    out = []
    for n in ids:
        if n not in out:
            out.append(n)
    return out[:max_nodes]


def refine(
    model: nn.Module,
    graph: Graph,
    nodes: list[str] | None = None,
    *,
    top_dims: int = 8,
    top_upstream: int = 8,
    max_nodes: int = 12,
    token_ids=None,
    position: int | None = None,
    target: int | None = None,
    contrast: int | None = None,
    rule: str | None = None,
) -> dict:
    """Neuron-level view of ``nodes`` (ids ``"<layer>@<token>"``; default: the graph's most relevant nodes).

    Returns ``{"rule", "nodes": {id: {"relevance", "dims": [{"dim", "relevance", "sources": {src id: share},
    "upstream": [{"source", "dim", "weight"}]}]}}}`` and, when a vmapped backward had to be redone one seed at a
    time, ``"fallbacks": {cause: count}``; ``sources`` are restricted to the node's in-neighbours in
    ``graph`` (all tokens if it has none there). Inputs default to ``graph.inputs`` (set by ``build_graph``).
    """
    inputs = dict(graph.inputs or {})
    token_ids = token_ids if token_ids is not None else inputs.get("token_ids")
    if token_ids is None:
        raise ValueError("refine() needs the token ids (the graph was loaded from JSON: pass token_ids=..., etc.)")
    position = inputs.get("position", -1) if position is None else position
    target = inputs.get("target") if target is None else target
    contrast = inputs.get("contrast") if contrast is None else contrast
    rule = rule or graph.meta.get("rule", "attnlrp")
    nodes = list(nodes) if nodes is not None else default_nodes(graph, max_nodes)
    T = graph.n_tokens
    wanted: dict[int, list[tuple[str, str, int]]] = {}  # block -> [(node id, kind, token)]
    embed_nodes = []
    for node in nodes:
        layer, token = node.rsplit("@", 1)
        if layer == "embed":
            embed_nodes.append((node, int(token)))
            continue
        block, kind = layer.split(".")
        wanted.setdefault(int(block), []).append((node, kind, int(token)))

    def sources(node_key: int) -> torch.Tensor | None:
        sel = graph.edge_target == node_key
        return (graph.edge_source[sel] % T) if bool(sel.any()) else None

    result: dict[str, dict] = {}
    fallbacks: dict[str, int] = {}

    def describe(node, h_row, g_row, src_layer, contributions, dims, allowed):
        r = h_row.float() * g_row.float()
        entry = {"relevance": float(r.sum()), "dims": []}
        for b, k in enumerate(dims):
            d = {"dim": int(k), "relevance": float(r[k])}
            if contributions is not None:
                C = contributions[b]
                toks = allowed if allowed is not None else torch.nonzero(C.abs().sum(-1) > 0).reshape(-1)
                sub = C[toks]  # [n_src, d]
                d["sources"] = {f"{src_layer}@{int(t)}": float(v) for t, v in zip(toks.tolist(), sub.sum(-1).tolist())}
                n = min(top_upstream, sub.numel())
                top = torch.topk(sub.abs().reshape(-1), n).indices if n else torch.zeros(0, dtype=torch.long)
                d["upstream"] = [
                    {"source": f"{src_layer}@{int(toks[i // sub.shape[1]])}", "dim": int(i % sub.shape[1]), "weight": float(sub.reshape(-1)[i])}
                    for i in top.tolist()
                ]
            entry["dims"].append(d)
        result[node] = entry

    def top_dims_of(h_row, g_row):
        r = (h_row.float() * g_row.float()).abs()
        return torch.topk(r, min(top_dims, r.numel())).indices.tolist()

    device = input_device(model)
    ids = as_ids(token_ids, device)
    pos = position % ids.numel()
    arch = architecture_of(model)
    with Composite(model, rule, arch):
        record = record_forward(model, ids, arch)
        g_final, _ = objective_gradient(model, arch, record.final, pos, target, contrast)

        def on_block(step: BlockStep):
            for node, kind, j in wanted.get(step.index, []):
                if kind == "mid":
                    src, tgt, g_t, src_layer = step.x, step.mid, step.g_mid, graph.layers[2 * step.index]
                else:
                    src, tgt, g_t, src_layer = step.mid, step.out, step.g_out, graph.layers[2 * step.index + 1]
                h_row = tgt.detach()[0, j]
                dims = top_dims_of(h_row, g_t[0, j])
                C = _dim_contributions(src, tgt, g_t, j, dims, fallbacks)
                describe(node, h_row, g_t[0, j], src_layer, C, dims, sources(graph.key_of(node)))

        g_embed, _ = backward_blocks(model, record, g_final, arch=arch, on_block=on_block if wanted else None)
    for node, j in embed_nodes:
        h_row, g_row = record.inputs[0][0, j], g_embed[0, j]
        describe(node, h_row, g_row, None, None, top_dims_of(h_row, g_row), None)
    out = {"rule": rule, "nodes": {n: result[n] for n in nodes if n in result}}
    if fallbacks:
        out["fallbacks"] = fallbacks
    return out
