"""Cross-layer attribution graphs (contrastive AttnLRP), pruning, subgraphs and neuron-level refinement.

>>> from lm_eval_lrp.graph import build_graph, load_graph
>>> g = build_graph(model, token_ids, position, target, contrast)   # pruned, nodes reaching the final node
>>> g.write("graph_task_3.json"); load_graph("graph_task_3.json")
"""

from .build import (
    GraphRun,
    Transition,
    auto_batch_size,
    build_full_graph,
    build_graph,
    compute_transitions,
    transition_matrices,
)
from .model import FORMAT, Graph, graph_filename, layer_names, load_graph
from .prune import parse_prune, prune_graph, reachable_subgraph, select_edges
from .refine import refine

__all__ = [
    "FORMAT",
    "Graph",
    "GraphRun",
    "Transition",
    "auto_batch_size",
    "build_full_graph",
    "build_graph",
    "compute_transitions",
    "graph_filename",
    "layer_names",
    "load_graph",
    "parse_prune",
    "prune_graph",
    "reachable_subgraph",
    "refine",
    "select_edges",
    "transition_matrices",
]
