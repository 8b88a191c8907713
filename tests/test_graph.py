"""Attribution graphs on tiny seeded random models: edges, exact shortcuts, identities, pruning, subgraph, JSON, CLI.

Notation: transition s -> t, target token j, source token i, ``A[j, i] = Σ_k h_s[i,k] ∂⟨h_t[j], g_t[j]⟩/∂h_s[i,k]``
under the LRP rules, ``R_l(i) = h_l[i]·g_l[i]`` the node relevance of the contrastive backward.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import ARCHS, VOCAB, tiny_ids, tiny_model

from lm_eval_lrp.graph import (
    FORMAT,
    Graph,
    build_full_graph,
    build_graph,
    load_graph,
    prune_graph,
    reachable_subgraph,
    refine,
    select_edges,
    transition_matrices,
)
from lm_eval_lrp.lrp import explain

SHORT = ("llama", "qwen3", "gemma3", "gpt2")  # Llama family, q/k-norm + sandwich norms, generic LayerNorm/bias path
POS, TGT, CON = -2, 5, 17  # an explained position other than the last: later tokens must stay out of the graph


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / (b.abs().max() + 1e-12))


def randomise_biases(model, seed=3, scale=0.3):
    """Non-zero projection biases (they are initialised to 0), so that bias handling is really exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.add_(scale * torch.randn(p.shape, generator=gen))


def zero_biases(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.zero_()


def matrices(model, rule="attnlrp", method="packed", mlp="packed", ids=None, **kw):
    kw.setdefault("node_threshold", 0.0)
    ids = tiny_ids() if ids is None else ids
    return transition_matrices(model, ids, POS, TGT, CON, rule=rule, method=method, mlp=mlp, **kw)


# ----------------------------------------------------------------------------- the reference and batch-packing


@pytest.mark.parametrize(
    "arch,rule", [("llama", "attnlrp"), ("llama", "cp"), ("qwen3", "attnlrp"), ("gemma3", "cp"), ("gpt2", "attnlrp")]
)
def test_batch_packed_equals_naive(arch, rule):
    """Batch-packing (B copies, element b seeded at row j_b only; B=5 leaves a ragged last batch) gives exactly the
    rows of one-target-per-backward, for every transition, and so does the vmapped one-forward variant."""
    model = tiny_model(arch)
    _, naive = matrices(model, rule, method="naive", mlp="naive")
    _, packed = matrices(model, rule, method="packed", mlp="packed", batch_size=5)
    _, batched = matrices(model, rule, method="batched", mlp="batched", batch_size=4)
    assert list(naive) == list(packed) == list(batched)
    for name in naive:
        assert naive[name].abs().max() > 0
        assert rel_err(packed[name], naive[name]) < 1e-6, name
        assert rel_err(batched[name], naive[name]) < 1e-6, name


@pytest.mark.parametrize("arch", SHORT)
def test_mlp_transition_is_diagonal(arch):
    """The MLP half is token-wise: A[j, j] = R_mid(j) and A[j, i≠j] = 0 -- the shortcut equals the reference."""
    model = tiny_model(arch)
    run, ref = matrices(model, mlp="packed", method="packed", batch_size=4)
    _, fast = matrices(model, mlp="diagonal", method="packed", batch_size=4)
    for layer in range(model.config.num_hidden_layers):
        name = f"{layer}.mid"
        off = ref[name] - torch.diag(torch.diagonal(ref[name]))
        assert float(off.abs().max()) <= 1e-6 * float(ref[name].abs().max())
        assert rel_err(fast[name], ref[name]) < 1e-6
        assert torch.allclose(torch.diagonal(fast[name]), run.node_relevance[run.layers.index(name)], atol=1e-7)


CLOSED = [(a, r, "eager") for a in ARCHS for r in ("attnlrp", "cp")] + [(a, "attnlrp", "sdpa") for a in ARCHS]


@pytest.mark.parametrize("arch,rule,attn", CLOSED)
def test_attention_closed_form_equals_reference(arch, rule, attn):
    """value path ½ Σ_h P_ji ⟨U^h_j, v^h_i⟩, key path ¼ Σ_h D_ji s_ji, query path ¼ Σ_i' D_ji' s_ji' on (j, j),
    residual h_s[j]·g_t[j] on (j, j) (CP-LRP: 1, 0, 0) equals the batch-packed autograd reference to 1e-5,
    with non-zero biases (they absorb relevance: bias-free k, v, q in the formula)."""
    model = tiny_model(arch, attn=attn)
    randomise_biases(model)
    run_ref, ref = matrices(model, rule, method="packed", mlp="packed", batch_size=6)
    run, fast = matrices(model, rule, method="closed", mlp="diagonal")
    assert run.methods["attn"] == {"closed": model.config.num_hidden_layers}
    for name in ref:
        assert rel_err(fast[name], ref[name]) < 1e-5, name
    assert torch.allclose(run.node_relevance, run_ref.node_relevance)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_closed_form_in_row_chunks(arch, monkeypatch):
    """The closed form processed 3 query rows at a time (columns after a chunk's last row skipped: causal) is
    the same as the batch-packed reference."""
    import lm_eval_lrp.graph.build as build

    model = tiny_model(arch)
    _, ref = matrices(model, method="packed", batch_size=6, ids=tiny_ids(16))
    monkeypatch.setattr(build, "auto_chunk", lambda T: 3)
    _, fast = matrices(model, method="closed", mlp="diagonal", ids=tiny_ids(16))
    for name in ref:
        assert rel_err(fast[name], ref[name]) < 1e-5, name


# ----------------------------------------------------------------------------- identities


@pytest.mark.parametrize("rule", ["attnlrp", "cp"])
@pytest.mark.parametrize("arch", SHORT)
def test_edges_out_of_a_source_sum_to_its_relevance(arch, rule):
    """Σ_j A[j, i] = R_s(i) for every transition and source token i, when no target is skipped and nothing is pruned.

    The modified backward is linear in its seed: Σ_j (seed g_t[j] at row j) is the full gradient g_t, whose
    backward through F_{s→t} is g_s (s feeds only into t), so Σ_j A[j, i] = h_s[i]·g_s[i] = R_s(i) -- exactly, for
    any rule. The R_s here are explain()'s (the monolithic backward), not the graph build's own.
    """
    model = tiny_model(arch)
    ids = tiny_ids()
    run, A = matrices(model, rule, method="auto", mlp="diagonal", ids=ids)
    e = explain(model, ids, POS, TGT, CON, rule=rule)
    assert e.node_names == run.layers
    for name, a in A.items():
        r_s = e.node(name)
        assert torch.allclose(a.sum(0), r_s, atol=1e-5 * float(r_s.abs().max()) + 1e-7), name
    assert run.delta == pytest.approx(e.delta, abs=1e-5)


@pytest.mark.parametrize("arch", SHORT)
def test_cp_edges_into_a_target_sum_to_its_relevance(arch):
    """CP-LRP on a bias-free model: Σ_i A[j, i] = R_t(j) for every transition and target j (exact conservation).

    With q, k and the MLP gate held constant, ⟨h_t[j], g_t[j]⟩ is a linear, homogeneous function of h_s
    (norms with constant 1/σ, no biases), so by Euler's theorem Σ_i h_s[i]·∂⟨h_t[j],g_t[j]⟩/∂h_s[i] = R_t(j).
    """
    model = tiny_model(arch)
    zero_biases(model)
    run, A = matrices(model, "cp", method="auto", mlp="diagonal")
    for name, a in A.items():
        r_t = run.node_relevance[run.layers.index(name) + 1]
        assert torch.allclose(a.sum(1), r_t, atol=1e-5 * float(r_t.abs().max()) + 1e-7), name


@pytest.mark.parametrize("arch", ["llama", "qwen3", "gemma3"])
def test_attnlrp_edges_into_a_target(arch):
    """AttnLRP, bias-free gated model. Edges into target j sum to Σ_i h_s[i]·∂⟨h_t[j],g_t[j]⟩/∂h_s[i], which is:

    * MLP transitions: R_t(j) exactly (identity rule on norm and activation, uniform ½ on act(gate)·up, linear
      maps: each step conserves, token by token);
    * attention transitions: R_t(j) minus what the softmax loses for query j (½ Σ_h Σ_i P_ji G_ji in, the
      scores' relevance out), not R_t(j). Summed over targets this loss is the block's ``attn_lost`` reported by
      ``explain().conservation``: Σ_j (R_t(j) − Σ_i A[j, i]) = Σ R_mid − Σ R_in.
    """
    model = tiny_model(arch)
    zero_biases(model)
    ids = tiny_ids()
    run, A = matrices(model, "attnlrp", method="auto", mlp="diagonal", ids=ids)
    e = explain(model, ids, POS, TGT, CON, rule="attnlrp")
    for layer, block in enumerate(e.conservation["blocks"]):
        mlp = A[f"{layer}.mid"]
        r_out = e.node(f"{layer}.out")
        assert torch.allclose(mlp.sum(1), r_out, atol=1e-5 * float(r_out.abs().max()) + 1e-7)
        attn = A["embed" if layer == 0 else f"{layer - 1}.out"]
        r_mid = e.node(f"{layer}.mid")
        loss = r_mid - attn.sum(1)
        assert float(loss.abs().max()) > 1e-4 * float(r_mid.abs().max())  # not conservative per target
        assert float(loss.sum()) == pytest.approx(block["attn_lost"], abs=1e-5 * float(r_mid.abs().sum()))


def test_node_threshold_skips_targets_only():
    """Targets with |R_t(j)| < threshold get no row; the rows that remain are unchanged."""
    model = tiny_model("llama")
    run, full = matrices(model, method="auto")
    thr = 0.05 * float(run.node_relevance.abs().max())
    _, part = matrices(model, method="auto", node_threshold=thr)
    for name in full:
        r_t = run.node_relevance[run.layers.index(name) + 1]
        kept = r_t.abs() >= thr
        assert 0 < int(kept.sum())
        assert torch.equal(part[name][~kept], torch.zeros_like(part[name][~kept]))
        assert torch.allclose(part[name][kept], full[name][kept], atol=1e-7)


# ----------------------------------------------------------------------------- pruning and the subgraph


def test_select_edges_threshold_and_mass():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(40, 30, generator=gen) * torch.rand(40, 30, generator=gen).pow(4)
    w[w.abs() < 0.01] = 0.0
    flat = w.reshape(-1)
    nz = flat[flat != 0].abs()

    keep, st = select_edges(w, ("threshold", 0.2))
    assert set(keep.tolist()) == set(torch.nonzero(flat.abs() > 0.2).reshape(-1).tolist())
    assert st["kept"] == keep.numel() and st["total"] == nz.numel() and st["threshold"] == 0.2
    assert st["mass_kept"] == pytest.approx(float(flat[keep].abs().sum()), rel=1e-6)
    assert st["mass_total"] == pytest.approx(float(nz.sum()), rel=1e-6)

    for p in (0.3, 0.85, 0.999, 1.0):
        keep, st = select_edges(w, ("mass", p))
        kept = flat[keep].abs()
        total = float(nz.double().sum())
        assert float(kept.double().sum()) >= p * total * (1 - 1e-12)  # holds at least p of the mass
        assert float(kept.double().sum()) - float(kept.min()) < p * total  # ... with the shortest prefix
        dropped = torch.ones_like(flat, dtype=torch.bool)
        dropped[keep] = False
        assert float(kept.min()) >= float(flat[dropped].abs().max())  # the largest edges
        assert st["threshold"] == pytest.approx(float(kept.min()))
        assert st["kept"] == keep.numel() and st["total"] == nz.numel()
    assert select_edges(torch.zeros(5), ("mass", 0.85))[1]["kept"] == 0


def _reaches_final(graph: Graph) -> set[str]:
    """Independent check: nodes with a path to the final node, by a plain breadth-first search over links."""
    into: dict[str, list[str]] = {}
    for link in graph.links:
        into.setdefault(link["target"], []).append(link["source"])
    seen, todo = {graph.final_node}, [graph.final_node]
    while todo:
        for s in into.get(todo.pop(), []):
            if s not in seen:
                seen.add(s)
                todo.append(s)
    return seen


@pytest.mark.parametrize("prune", [("mass", 0.85), ("threshold", 0.01)])
def test_pruned_graph_and_subgraph(prune):
    model = tiny_model("llama")
    ids = tiny_ids()
    full = build_full_graph(model, ids, POS, TGT, CON, node_threshold=0.0, prune=None)
    streamed = build_full_graph(model, ids, POS, TGT, CON, node_threshold=0.0, prune=prune)
    pruned = prune_graph(full, prune)  # the pure function on a plain Graph == pruning while streaming
    for a, b in ((pruned, streamed),):
        assert torch.equal(a.edge_source, b.edge_source) and torch.equal(a.edge_target, b.edge_target)
        assert torch.allclose(a.edge_weight, b.edge_weight)
        for ta, tb in zip(a.transitions, b.transitions):
            assert ta["kept"] == tb["kept"] and ta["total"] == tb["total"]
            assert ta["mass_kept"] == pytest.approx(tb["mass_kept"], rel=1e-5)
    for t in pruned.transitions:  # per-transition promise
        if prune[0] == "mass":
            assert t["mass_kept"] >= prune[1] * t["mass_total"] * (1 - 1e-9)
        else:
            tgt, src, w = pruned.transition_edges(t["source_layer"])
            assert bool((w.abs() > prune[1]).all())
            assert t["kept"] == int((full.transition_edges(t["source_layer"])[2].abs() > prune[1]).sum())
    sub = reachable_subgraph(pruned)
    ids_sub = {n["id"] for n in sub.nodes}
    assert sub.final_node in ids_sub
    assert ids_sub == _reaches_final(pruned)  # exactly the nodes that reach the final node
    assert {l["source"] for l in sub.links} | {l["target"] for l in sub.links} <= ids_sub
    assert _reaches_final(sub) == ids_sub
    # causal: nothing after the explained position
    pos = POS % ids.numel()
    assert all(n["token"] <= pos for n in sub.nodes)
    # build_graph == the same, end to end
    g = build_graph(model, ids, POS, TGT, CON, node_threshold=0.0, prune=prune)
    assert {n["id"] for n in g.nodes} == ids_sub and g.n_edges == sub.n_edges


def test_json_round_trip(tmp_path):
    model = tiny_model("qwen3")
    ids = tiny_ids()
    tokens = [f"t{i}" for i in ids.tolist()]
    g = build_graph(model, ids, POS, TGT, CON, tokens=tokens, record={"task": "demo", "doc_id": 7, "extra": 1})
    data = json.loads(g.to_json())
    assert set(data) == {"format", "meta", "layers", "tokens", "nodes", "links", "transitions"}
    assert data["format"] == FORMAT
    assert set(data["meta"]) == {"record", "rule", "delta", "node_threshold", "prune", "final_node"}
    assert data["meta"]["record"] == {"task": "demo", "doc_id": 7}
    assert data["meta"]["prune"] == {"mode": "mass", "value": 0.85}
    assert data["meta"]["final_node"] == f"{model.config.num_hidden_layers - 1}.out@{ids.numel() - 2}"
    assert data["layers"][:3] == ["embed", "0.mid", "0.out"] and data["tokens"] == tokens
    node = data["nodes"][0]
    assert set(node) == {"id", "layer", "layer_index", "token", "relevance"}
    assert node["id"] == f"{node['layer']}@{node['token']}" and data["layers"][node["layer_index"]] == node["layer"]
    ids_ = {n["id"] for n in data["nodes"]}
    for link in data["links"]:
        assert set(link) == {"source", "target", "weight"} and link["source"] in ids_ and link["target"] in ids_
        lo, hi = (data["layers"].index(link[k].rsplit("@", 1)[0]) for k in ("source", "target"))
        assert hi == lo + 1
    assert [t["source_layer"] for t in data["transitions"]] == data["layers"][:-1]
    assert set(data["transitions"][0]) == {"source_layer", "target_layer", "threshold", "kept", "total", "mass_total", "mass_kept"}

    path = g.write(tmp_path / "graph_demo_7.json")
    back = load_graph(path)
    assert back.to_dict() == g.to_dict()
    assert Graph.from_json(g.to_json()).to_json() == g.to_json()
    assert torch.equal(back.edge_weight, g.edge_weight) and torch.equal(back.node_keys, g.node_keys)
    assert g.relevance_of(g.final_node) == pytest.approx(back.relevance_of(back.final_node))


# ----------------------------------------------------------------------------- coarse-to-fine


def test_refine_neuron_level_adds_up():
    """Neuron relevance of a node sums over dims to its node relevance; with all dims refined, each dim's per-source
    shares sum (over dims) to the edge weight A[j, i] (linearity of the backward in the seed)."""
    model = tiny_model("llama")
    ids = tiny_ids()
    g = build_graph(model, ids, POS, TGT, CON, node_threshold=0.0, prune=None)
    d = model.config.hidden_size
    nodes = [g.final_node, f"1.mid@{ids.numel() - 2}", "embed@3"]
    out = refine(model, g, nodes, top_dims=d, top_upstream=5)
    assert list(out["nodes"]) == nodes
    for node in nodes:
        entry = out["nodes"][node]
        assert entry["relevance"] == pytest.approx(g.relevance_of(node), abs=1e-5)
        assert sum(x["relevance"] for x in entry["dims"]) == pytest.approx(entry["relevance"], abs=1e-5)
    for node in nodes[:2]:
        key = g.key_of(node)
        sel = g.edge_target == key
        expect = {g.node_id(int(s)): float(w) for s, w in zip(g.edge_source[sel], g.edge_weight[sel])}
        dims = out["nodes"][node]["dims"]
        got = {s: sum(x["sources"].get(s, 0.0) for x in dims) for s in expect}
        for s in expect:
            assert got[s] == pytest.approx(expect[s], abs=1e-5), (node, s)
        assert len(dims[0]["upstream"]) == 5
        top = dims[0]["upstream"]
        assert abs(top[0]["weight"]) >= abs(top[-1]["weight"])
    # only a few dims: the top |relevance| ones
    few = refine(model, g, [g.final_node], top_dims=3)["nodes"][g.final_node]["dims"]
    assert [x["dim"] for x in few] == [x["dim"] for x in out["nodes"][g.final_node]["dims"]][:3]
    assert abs(few[0]["relevance"]) >= abs(few[1]["relevance"]) >= abs(few[2]["relevance"])


# ----------------------------------------------------------------------------- build_graph options and the CLI


def test_build_graph_auto_and_batch_size_agree():
    model = tiny_model("gpt2")
    ids = tiny_ids()
    a = build_graph(model, ids, POS, TGT, CON, batch_size=None)
    b = build_graph(model, ids, POS, TGT, CON, batch_size=3, method="packed")
    assert {n["id"] for n in a.nodes} == {n["id"] for n in b.nodes}
    assert torch.allclose(a.edge_weight, b.edge_weight, atol=1e-5 * float(a.edge_weight.abs().max()))
    assert a.run.methods["attn"] == {"closed": 2} and b.run.methods["attn"] == {"packed": 2}


def test_cli_graph_from_a_stored_record(tmp_path, capsys):
    from lm_eval_lrp.commands import graph as cmd

    model = tiny_model("llama")
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    ids = tiny_ids().tolist()
    run_dir = tmp_path / "run" / "model_x"
    run_dir.mkdir(parents=True)
    rec = {
        "task": "demo", "doc_id": 4, "status": "attributed", "rule": "attnlrp", "token_ids": ids,
        "tokens": [f"<{i}>" for i in ids], "position": len(ids) - 1,
        "target": {"id": TGT, "token": "a"}, "contrast": {"id": CON, "token": "b"},
    }
    other = {**rec, "doc_id": 5, "status": "skipped"}
    jsonl = run_dir / "attributions_demo_2026-01-01T00-00-00.000000.jsonl"
    jsonl.write_text(json.dumps(other) + "\n" + json.dumps(rec) + "\n", encoding="utf-8")

    assert cmd.main([str(tmp_path / "run"), "--doc_id", "4", "--model_args", f"pretrained={model_dir}", "--prune", "threshold:0.001"]) == 0
    g = load_graph(run_dir / "graph_demo_4.json")
    assert g.meta["record"] == {"task": "demo", "doc_id": 4} and g.meta["prune"] == {"mode": "threshold", "value": 0.001}
    assert g.tokens == rec["tokens"] and g.n_edges > 0
    direct = build_graph(model, ids, len(ids) - 1, TGT, CON, prune=("threshold", 0.001))
    assert {n["id"] for n in g.nodes} == {n["id"] for n in direct.nodes}

    out = tmp_path / "g.json"
    assert cmd.main([str(jsonl), "--doc_id", "4", "--model_args", f"pretrained={model_dir}", "--output", str(out), "--neurons", "2"]) == 0
    assert load_graph(out).meta["prune"]["mode"] == "mass"
    neurons = json.loads((tmp_path / "g.neurons.json").read_text())
    assert len(neurons["nodes"]) == 2
    assert cmd.main([str(jsonl), "--doc_id", "5", "--model_args", f"pretrained={model_dir}"]) == 2
    assert cmd.main([str(jsonl), "--doc_id", "99", "--model_args", f"pretrained={model_dir}"]) == 2
    assert cmd.main([str(jsonl), "--doc_id", "4", "--model_args", f"pretrained={model_dir}", "--prune", "bogus:1"]) == 2
    assert "no record with doc_id 99" in capsys.readouterr().err
    from lm_eval_lrp.cli import main as cli_main  # the dispatcher finds the sub-command

    with pytest.raises(SystemExit) as exit_:
        cli_main(["graph", str(jsonl), "--doc_id", "4", "--model_args", f"pretrained={model_dir}", "--output", str(out)])
    assert exit_.value.code == 0
