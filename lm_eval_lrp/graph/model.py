"""The attribution graph as a plain object, and its JSON (node-link) form ``lm-eval-lrp-graph/1``.

Nodes are (residual position, token): positions ``"embed"``, ``"<l>.mid"``, ``"<l>.out"`` in model order, node id
``"<layer>@<token index>"``. Edges go from a node of one position to a node of the next; the weight is signed.
Internally a node is a key ``layer_index * T + token``; edges are three flat tensors.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

FORMAT = "lm-eval-lrp-graph/1"


def layer_names(n_layers: int) -> list[str]:
    names = ["embed"]
    for i in range(n_layers):
        names += [f"{i}.mid", f"{i}.out"]
    return names


def _float(x) -> float:
    x = float(x)
    return x if math.isfinite(x) else 0.0


@dataclass
class Graph:
    """An attribution graph: nodes with relevance, signed edges, per-transition pruning statistics."""

    layers: list[str]
    tokens: list[str]
    node_keys: torch.Tensor  # int64 [N], sorted, unique
    node_relevance: torch.Tensor  # float32 [N]
    edge_source: torch.Tensor  # int64 [E] node keys (lower layer)
    edge_target: torch.Tensor  # int64 [E] node keys (next layer)
    edge_weight: torch.Tensor  # float32 [E]
    transitions: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    inputs: dict | None = None  # token_ids / position / target / contrast when built here (not serialised)
    run: object = field(default=None, repr=False)  # the build's GraphRun (all node relevance; not serialised)

    # ------------------------------------------------------------------ ids and keys

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def key(self, layer: str | int, token: int) -> int:
        index = self.layers.index(layer) if isinstance(layer, str) else int(layer)
        return index * self.n_tokens + int(token)

    def node_id(self, key: int) -> str:
        layer, token = divmod(int(key), self.n_tokens)
        return f"{self.layers[layer]}@{token}"

    def key_of(self, node_id: str) -> int:
        layer, token = node_id.rsplit("@", 1)
        return self.key(layer, int(token))

    @property
    def final_node(self) -> str:
        return self.meta["final_node"]

    @property
    def final_key(self) -> int:
        return self.key_of(self.final_node)

    def relevance_of(self, node_id: str) -> float:
        k = self.key_of(node_id)
        i = int(torch.searchsorted(self.node_keys, torch.tensor(k)))
        if i >= self.node_keys.numel() or int(self.node_keys[i]) != k:
            raise KeyError(node_id)
        return float(self.node_relevance[i])

    def __contains__(self, node_id: str) -> bool:
        try:
            self.relevance_of(node_id)
        except (KeyError, ValueError):
            return False
        return True

    @property
    def n_nodes(self) -> int:
        return int(self.node_keys.numel())

    @property
    def n_edges(self) -> int:
        return int(self.edge_weight.numel())

    @property
    def nodes(self) -> list[dict]:
        T = self.n_tokens
        return [
            {"id": self.node_id(k), "layer": self.layers[k // T], "layer_index": k // T, "token": k % T, "relevance": _float(r)}
            for k, r in zip(self.node_keys.tolist(), self.node_relevance.tolist())
        ]

    @property
    def links(self) -> list[dict]:
        return [
            {"source": self.node_id(s), "target": self.node_id(t), "weight": _float(w)}
            for s, t, w in zip(self.edge_source.tolist(), self.edge_target.tolist(), self.edge_weight.tolist())
        ]

    def transition_edges(self, source_layer: str | int):
        """``(target tokens, source tokens, weights)`` of the edges leaving position ``source_layer``."""
        index = self.layers.index(source_layer) if isinstance(source_layer, str) else int(source_layer)
        sel = torch.div(self.edge_source, self.n_tokens, rounding_mode="floor") == index
        return self.edge_target[sel] % self.n_tokens, self.edge_source[sel] % self.n_tokens, self.edge_weight[sel]

    def dense(self, source_layer: str | int) -> torch.Tensor:
        """``A[j, i]`` of one transition as a dense [T, T] matrix (absent edges are 0)."""
        T = self.n_tokens
        tgt, src, w = self.transition_edges(source_layer)
        out = torch.zeros(T, T, dtype=torch.float32)
        out[tgt, src] = w
        return out

    # ------------------------------------------------------------------ (de)serialisation

    def to_dict(self) -> dict:
        meta = dict(self.meta)
        if isinstance(meta.get("delta"), float) and not math.isfinite(meta["delta"]):
            meta["delta"] = None  # strict JSON: no NaN / inf
        return {
            "format": FORMAT,
            "meta": meta,
            "layers": list(self.layers),
            "tokens": list(self.tokens),
            "nodes": self.nodes,
            "links": self.links,
            "transitions": [dict(t) for t in self.transitions],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> "Graph":
        if data.get("format") != FORMAT:
            raise ValueError(f"not an {FORMAT} graph (format={data.get('format')!r})")
        layers, tokens = list(data["layers"]), list(data["tokens"])
        T = len(tokens)

        def key(node_id: str) -> int:
            layer, token = node_id.rsplit("@", 1)
            return layers.index(layer) * T + int(token)

        nodes = sorted(((key(n["id"]), float(n["relevance"])) for n in data["nodes"]), key=lambda kv: kv[0])
        links = data["links"]
        return cls(
            layers=layers,
            tokens=tokens,
            node_keys=torch.tensor([k for k, _ in nodes], dtype=torch.long),
            node_relevance=torch.tensor([r for _, r in nodes], dtype=torch.float32),
            edge_source=torch.tensor([key(l["source"]) for l in links], dtype=torch.long),
            edge_target=torch.tensor([key(l["target"]) for l in links], dtype=torch.long),
            edge_weight=torch.tensor([float(l["weight"]) for l in links], dtype=torch.float32),
            transitions=[dict(t) for t in data.get("transitions", [])],
            meta=dict(data.get("meta", {})),
        )

    @classmethod
    def from_json(cls, text: "str | dict") -> "Graph":
        return cls.from_dict(text if isinstance(text, dict) else json.loads(text))

    def write(self, path: str | Path, indent: int | None = None) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(indent=indent), encoding="utf-8")
        tmp.replace(path)
        return path

    def summary(self) -> str:
        return (
            f"graph: {self.n_nodes} nodes, {self.n_edges} edges over {len(self.layers)} positions x {self.n_tokens} "
            f"tokens; final node {self.meta.get('final_node')}"
        )


def load_graph(path: str | Path) -> Graph:
    """Read a graph written by :meth:`Graph.write` (``graph_<task>_<doc_id>.json``)."""
    return Graph.from_json(Path(path).read_text(encoding="utf-8"))


def graph_filename(task: str, doc_id) -> str:
    return f"graph_{task}_{doc_id}.json"
