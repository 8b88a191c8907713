"""A stored attribution graph (``graph_<task>_<doc_id>.json``, format ``lm-eval-lrp-graph/1``) read back for the report:
its SVG and strongest paths (:mod:`lm_eval_lrp.graph` builds graphs; ``lm-eval-lrp graph`` is the sub-command).

The SVG draws layers (bottom: ``embed``, top: the last block's output) × token positions; node area ∝ |relevance|,
edge width ∝ |weight|, colour by sign (red towards the wrong token, blue towards the correct one).

Strongest paths: an edge s → t carries the share |w(s→t)| / Σ_s' |w(s'→t)| of t's incoming relevance; a path's
strength is the product of these shares along it, i.e. the fraction of the final node's relevance that flows
along the path when every node splits its relevance in proportion to |weight|. The sign is the product of the
edge signs. Paths start at nodes without incoming edges (usually ``embed``) and end at the final node.
"""

from __future__ import annotations

import heapq
import json
from pathlib import Path

from .svg import BLUE, RED, short, esc, fmt

FORMAT = "lm-eval-lrp-graph/1"


def graph_path(run_dir: Path, task: str, doc_id) -> Path:
    return Path(run_dir) / f"graph_{task}_{doc_id}.json"


def load_graph(path: Path) -> dict:
    """The graph at ``path``; raises ValueError when it is not an ``lm-eval-lrp-graph/1`` document."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{Path(path).name}: not a {FORMAT} document (format={data.get('format') if isinstance(data, dict) else None!r})")
    for key in ("layers", "nodes", "links"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{Path(path).name}: missing list {key!r}")
    return data


def _layer_index(graph: dict) -> dict[str, int]:
    layers = {name: i for i, name in enumerate(graph.get("layers") or [])}
    for n in graph["nodes"]:
        if n.get("layer") not in layers and n.get("layer_index") is not None:
            layers[n["layer"]] = int(n["layer_index"])
    return layers


def _nodes(graph: dict) -> dict[str, dict]:
    layers = _layer_index(graph)
    out = {}
    for n in graph["nodes"]:
        li = n.get("layer_index")
        li = layers.get(n.get("layer"), 0) if li is None else int(li)
        out[str(n["id"])] = {**n, "layer_index": li, "relevance": float(n.get("relevance") or 0.0)}
    return out


def _edges(graph: dict, nodes: dict) -> list[tuple[str, str, float]]:
    """(lower, upper, weight): oriented from the input side to the output side by layer index."""
    out = []
    for link in graph["links"]:
        s, t, w = str(link.get("source")), str(link.get("target")), float(link.get("weight") or 0.0)
        if s not in nodes or t not in nodes:
            continue
        if nodes[s]["layer_index"] > nodes[t]["layer_index"]:
            s, t = t, s
        out.append((s, t, w))
    return out


def final_node(graph: dict, nodes: dict) -> str | None:
    f = (graph.get("meta") or {}).get("final_node")
    if f in nodes:
        return f
    if not nodes:
        return None
    return max(nodes, key=lambda k: (nodes[k]["layer_index"], nodes[k].get("token", 0)))


def strongest_paths(graph: dict, k: int = 5) -> list[dict]:
    """The ``k`` strongest input → final paths: {nodes: [ids], strength: fraction, sign: ±1}."""
    nodes = _nodes(graph)
    edges = _edges(graph, nodes)
    final = final_node(graph, nodes)
    if final is None:
        return []
    incoming_abs: dict[str, float] = {}
    up: dict[str, list[tuple[str, float]]] = {}
    for s, t, w in edges:
        incoming_abs[t] = incoming_abs.get(t, 0.0) + abs(w)
        up.setdefault(s, []).append((t, w))
    # best[n]: up to k (strength, sign, path n→final), computed from the top layer down
    best: dict[str, list[tuple[float, int, tuple[str, ...]]]] = {final: [(1.0, 1, (final,))]}
    for n in sorted(nodes, key=lambda x: -nodes[x]["layer_index"]):
        if n == final:
            continue
        cands = []
        for t, w in up.get(n, []):
            if t not in best or not incoming_abs.get(t):
                continue
            share = abs(w) / incoming_abs[t]
            sign = 1 if w >= 0 else -1
            for strength, sgn, path in best[t]:
                cands.append((strength * share, sgn * sign, (n,) + path))
        if cands:
            best[n] = heapq.nlargest(k, cands, key=lambda c: c[0])
    sources = [n for n in best if n != final and not incoming_abs.get(n)]
    paths = heapq.nlargest(k, (c for n in sources for c in best[n]), key=lambda c: c[0])
    return [{"nodes": list(p), "strength": s, "sign": g} for s, g, p in paths]


def describe_path(path: dict, graph: dict) -> str:
    """``'tok' [embed→3.out] → 'tok2' [4.mid→11.out]``: hops on the same token folded together."""
    nodes = _nodes(graph)
    tokens = graph.get("tokens") or []
    runs: list[list] = []
    for nid in path["nodes"]:
        n = nodes[nid]
        tok = n.get("token")
        if runs and runs[-1][0] == tok:
            runs[-1][2] = n.get("layer")
        else:
            runs.append([tok, n.get("layer"), n.get("layer")])
    parts = []
    for tok, a, b in runs:
        name = repr(tokens[tok]) if isinstance(tok, int) and 0 <= tok < len(tokens) else f"#{tok}"
        parts.append(f"{name}@{tok} [{a}{'→' + str(b) if b != a else ''}]")
    return " → ".join(parts)


def render_svg(graph: dict, max_edges: int = 800, highlight: list[str] | None = None) -> str:
    """Layers × token positions; only positions that hold a node get a column."""
    nodes = _nodes(graph)
    edges = sorted(_edges(graph, nodes), key=lambda e: -abs(e[2]))[:max_edges]
    layers = list(graph.get("layers") or [])
    n_layers = max([len(layers)] + [n["layer_index"] + 1 for n in nodes.values()])
    positions = sorted({int(n.get("token", 0)) for n in nodes.values()})
    col = {p: i for i, p in enumerate(positions)}
    tokens = graph.get("tokens") or []
    left, top, col_w, row_h, bottom = 74, 16, 54, 20 if n_layers > 30 else 28, 70
    width = left + col_w * max(len(positions), 1) + 20
    height = top + row_h * n_layers + bottom

    def xy(nid):
        n = nodes[nid]
        return left + col_w * col[int(n.get("token", 0))] + col_w / 2, top + row_h * (n_layers - 1 - n["layer_index"]) + row_h / 2

    body = []
    for li in range(n_layers):
        y = top + row_h * (n_layers - 1 - li) + row_h / 2
        name = layers[li] if li < len(layers) else str(li)
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 20}" y2="{y:.1f}" stroke="#eee"/>')
        if n_layers <= 30 or li % 2 == 0 or li == n_layers - 1:
            body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{esc(name)}</text>')
    for p in positions:
        x = left + col_w * col[p] + col_w / 2
        y = top + row_h * n_layers + 8
        label = short(repr(tokens[p]) if 0 <= p < len(tokens) else f"#{p}", 14)
        body.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="10" text-anchor="end" '
                    f'transform="rotate(-40 {x:.1f} {y:.1f})">{esc(label)}<title>#{p} {esc(label)}</title></text>')
    wmax = max((abs(w) for _, _, w in edges), default=0.0) or 1.0
    on_path = set()
    for path in highlight or []:
        on_path.update(zip(path, path[1:]))
    for s, t, w in reversed(edges):  # strongest drawn last, on top
        (x1, y1), (x2, y2) = xy(s), xy(t)
        width_px = 0.4 + 5.0 * abs(w) / wmax
        colour = RED if w >= 0 else BLUE
        opacity = 0.25 + 0.65 * abs(w) / wmax
        extra = ' class="onpath"' if (s, t) in on_path else ""
        body.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
                    f'stroke-width="{width_px:.2f}" stroke-opacity="{opacity:.2f}"{extra}>'
                    f"<title>{esc(s)} → {esc(t)}: {fmt(w, '+.4g')}</title></line>")
    rmax = max((abs(n["relevance"]) for n in nodes.values()), default=0.0) or 1.0
    final = final_node(graph, nodes)
    for nid, n in nodes.items():
        x, y = xy(nid)
        r = 2.5 + 6.5 * (abs(n["relevance"]) / rmax) ** 0.5
        colour = RED if n["relevance"] >= 0 else BLUE
        stroke = ' stroke="#000" stroke-width="2"' if nid == final else ' stroke="#fff" stroke-width="0.6"'
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{colour}"{stroke}>'
                    f"<title>{esc(nid)}: R={fmt(n['relevance'], '+.4g')}</title></circle>")
    return (f'<svg class="graph" role="img" aria-label="attribution graph" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}">' + "".join(body) + "</svg>")


def render_section(graph: dict, k_paths: int = 5) -> str:
    """SVG, strongest paths and pruning statistics of one graph, as HTML."""
    meta = graph.get("meta") or {}
    paths = strongest_paths(graph, k_paths)
    svg = render_svg(graph, highlight=[p["nodes"] for p in paths[:1]])
    prune = meta.get("prune") or {}
    head = (f'<p class="meta">{len(graph["nodes"])} nodes, {len(graph["links"])} edges · rule {esc(meta.get("rule"))} · '
            f'Δℓ {fmt(meta.get("delta"), "+.3f")} · node threshold {esc(meta.get("node_threshold"))} · '
            f'pruning {esc(prune.get("mode"))} {esc(prune.get("value"))} · final node {esc(meta.get("final_node"))}</p>')
    rows = "".join(f"<tr><td>{i + 1}</td><td>{p['strength']:.1%}</td><td>{'+' if p['sign'] > 0 else '−'}</td>"
                   f"<td class=\"mono\">{esc(describe_path(p, graph))}</td></tr>" for i, p in enumerate(paths))
    table = ('<table class="small"><tr><th>#</th><th>share of final relevance</th><th>sign</th><th>path (token@position [layers])</th></tr>'
             + rows + "</table>") if rows else "<p>No path from an input node reaches the final node.</p>"
    trans = graph.get("transitions") or []
    trows = "".join(
        f"<tr><td>{esc(t.get('source_layer'))} → {esc(t.get('target_layer'))}</td><td>{esc(t.get('kept'))}/{esc(t.get('total'))}</td>"
        f"<td>{fmt(_ratio(t.get('mass_kept'), t.get('mass_total')), '.0%')}</td><td>{fmt(t.get('threshold'), '.3g')}</td></tr>"
        for t in trans)
    ttable = (f'<details><summary>pruning per transition ({len(trans)})</summary><table class="small"><tr><th>transition</th>'
              f"<th>edges kept</th><th>|A| mass kept</th><th>threshold</th></tr>{trows}</table></details>") if trans else ""
    return head + f'<div class="scroll">{svg}</div><h4>Strongest paths</h4>' + table + ttable


def _ratio(a, b):
    try:
        return float(a) / float(b) if b else None
    except (TypeError, ValueError):
        return None
