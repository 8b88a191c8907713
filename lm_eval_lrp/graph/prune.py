"""Pruning (paper App. B), as pure functions: per-transition edge selection, then the subgraph reaching the final node.

* ``("threshold", τ)``: keep the edges with ``|A| > τ``;
* ``("mass", p)``: sort the transition's edges by ``|A|`` (descending, stable) and keep the shortest prefix whose
  summed ``|A|`` is at least ``p`` times the transition's total ``Σ|A|``.

Each transition is pruned on its own and reports ``threshold`` (τ, or the smallest kept ``|A|`` for mass),
``kept``, ``total`` (non-zero edges offered), ``mass_total`` and ``mass_kept``.
"""

from __future__ import annotations

import torch

from .model import Graph

MODES = ("mass", "threshold")


def parse_prune(spec) -> tuple[str, float] | None:
    """``"mass:0.85"`` / ``"threshold:0.01"`` / ``("mass", 0.85)`` / None (no pruning)."""
    if spec is None or spec == "none":
        return None
    if isinstance(spec, str):
        mode, _, value = spec.partition(":")
        if not value:
            raise ValueError(f"prune spec {spec!r}: expected MODE:VALUE, e.g. mass:0.85 or threshold:0.01")
        spec = (mode, float(value))
    mode, value = spec
    if mode not in MODES:
        raise ValueError(f"unknown prune mode {mode!r}; choose one of {MODES}")
    value = float(value)
    if mode == "mass" and not 0.0 <= value <= 1.0:
        raise ValueError(f"mass fraction must be in [0, 1], got {value}")
    if mode == "threshold" and value < 0:
        raise ValueError(f"threshold must be >= 0, got {value}")
    return mode, value


def select_edges(weights: torch.Tensor, prune) -> tuple[torch.Tensor, dict]:
    """Indices (into the flattened ``weights``) of the kept non-zero edges, and the transition's statistics."""
    flat = weights.reshape(-1)
    mag = flat.abs()
    nz = torch.nonzero(mag > 0).reshape(-1)
    vals = mag[nz].double()
    total = int(nz.numel())
    mass_total = float(vals.sum()) if total else 0.0
    prune = parse_prune(prune)
    if prune is None:
        keep, threshold = nz, 0.0
    elif prune[0] == "threshold":
        tau = prune[1]
        keep, threshold = nz[vals > tau], tau
    else:
        p = prune[1]
        if total == 0 or p <= 0:
            keep, threshold = nz[:0], 0.0
        else:
            order = torch.sort(vals, descending=True, stable=True).indices
            csum = torch.cumsum(vals[order], 0)
            goal = p * float(csum[-1])
            n = min(int(torch.searchsorted(csum, torch.tensor(goal, dtype=torch.float64))) + 1, total)
            keep = nz[order[:n]]
            threshold = float(vals[order[n - 1]])
    mass_kept = float(mag[keep].double().sum()) if keep.numel() else 0.0
    stats = {"threshold": threshold, "kept": int(keep.numel()), "total": total, "mass_total": mass_total, "mass_kept": mass_kept}
    return keep, stats


def canonical_order(src: torch.Tensor, tgt: torch.Tensor, n_keys: int) -> torch.Tensor:
    """Permutation sorting edges by (source node, target node): the one edge order every graph uses."""
    return torch.argsort(src * n_keys + tgt)


def _with_edges(graph: Graph, src, tgt, w, transitions, keep_nodes=None) -> Graph:
    order = canonical_order(src, tgt, len(graph.layers) * graph.n_tokens)
    src, tgt, w = src[order], tgt[order], w[order]
    keys = torch.cat([src, tgt, torch.tensor([graph.final_key])]) if keep_nodes is None else keep_nodes
    keys = torch.unique(keys)
    pos = torch.searchsorted(graph.node_keys, keys).clamp(max=max(graph.n_nodes - 1, 0))
    present = graph.node_keys[pos] == keys if graph.n_nodes else torch.zeros_like(keys, dtype=torch.bool)
    rel = torch.where(present, graph.node_relevance[pos] if graph.n_nodes else 0.0, torch.zeros(()))
    return Graph(
        layers=graph.layers, tokens=graph.tokens, node_keys=keys, node_relevance=rel.float(),
        edge_source=src, edge_target=tgt, edge_weight=w, transitions=transitions, meta=dict(graph.meta), inputs=graph.inputs, run=graph.run,
    )


def prune_graph(graph: Graph, prune) -> Graph:
    """A new graph: each transition's edges pruned on their own; nodes = kept edges' ends and the final node."""
    prune = parse_prune(prune)
    T = graph.n_tokens
    src_layer = torch.div(graph.edge_source, T, rounding_mode="floor")
    parts, transitions = [], []
    for index in range(len(graph.layers) - 1):
        sel = torch.nonzero(src_layer == index).reshape(-1)
        keep, stats = select_edges(graph.edge_weight[sel], prune)
        parts.append(sel[keep])
        transitions.append({"source_layer": graph.layers[index], "target_layer": graph.layers[index + 1], **stats})
    kept = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
    kept = kept.sort().values
    meta = dict(graph.meta)
    if prune is not None:
        meta["prune"] = {"mode": prune[0], "value": prune[1]}
    out = _with_edges(graph, graph.edge_source[kept], graph.edge_target[kept], graph.edge_weight[kept], transitions)
    out.meta = meta
    return out


def reachable_subgraph(graph: Graph, final_node: str | None = None) -> Graph:
    """The nodes with a path (along the graph's edges) to the final node, and the edges between them."""
    T = graph.n_tokens
    final = graph.key_of(final_node) if final_node else graph.final_key
    n_keys = len(graph.layers) * T
    reached = torch.zeros(n_keys, dtype=torch.bool)
    reached[final] = True
    keep = torch.zeros(graph.n_edges, dtype=torch.bool)
    tgt_layer = torch.div(graph.edge_target, T, rounding_mode="floor")
    for index in range(final // T, 0, -1):  # edges only join consecutive positions: one sweep, top down
        sel = (tgt_layer == index) & reached[graph.edge_target]
        keep |= sel
        reached[graph.edge_source[sel]] = True
    idx = torch.nonzero(keep).reshape(-1)
    nodes = torch.nonzero(reached).reshape(-1)
    return _with_edges(
        graph, graph.edge_source[idx], graph.edge_target[idx], graph.edge_weight[idx], list(graph.transitions), keep_nodes=nodes
    )
