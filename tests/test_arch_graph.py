"""Attribution graphs and neuron refinement on every family: the attention edges from the adapter (closed form where
it applies, else the batch-packed backward), equal to the one-target-per-backward reference."""

from __future__ import annotations

import pytest
import torch
from arch_zoo import ZOO, single_thread, tiny  # noqa: F401 (single_thread: a fixture)
from conftest import tiny_ids

from lm_eval_lrp.graph import build_graph, refine, transition_matrices
from lm_eval_lrp.graph.attention import closed_form_supported
from lm_eval_lrp.lrp import architecture_of

POS, TGT, CON = -2, 5, 17
FAMILIES = sorted(ZOO)


def rel_err(a, b) -> float:
    return float((a - b).abs().max() / (b.abs().max() + 1e-12))


def matrices(model, rule, method, mlp, **kw):
    return transition_matrices(model, tiny_ids(), POS, TGT, CON, rule=rule, method=method, mlp=mlp,
                               node_threshold=0.0, **kw)


@pytest.mark.parametrize("rule", ["attnlrp", "cp"])
@pytest.mark.parametrize("family", FAMILIES)
def test_graph_edges_equal_the_reference(family, rule):
    """``auto`` (closed form where the adapter allows it, and the diagonal MLP shortcut where the MLP is token-wise)
    gives the edges of the batch-packed reference; the closed form is used wherever the adapter allows it."""
    model = tiny(family)
    arch = architecture_of(model)
    token_wise = arch.mlp_is_token_wise(model)
    run_ref, ref = matrices(model, rule, "packed", "packed", batch_size=5)
    run, fast = matrices(model, rule, "auto", "diagonal" if token_wise else "packed")
    expect_closed = closed_form_supported(model) and token_wise
    assert ("closed" in run.methods["attn"]) == expect_closed, run.methods
    for name in ref:
        assert ref[name].abs().max() > 0, name
        assert rel_err(fast[name], ref[name]) < 1e-5, (name, run.methods)
    assert torch.allclose(run.node_relevance, run_ref.node_relevance, atol=1e-6)


def test_parallel_residual_mlp_is_not_token_wise():
    """GPT-NeoX with the parallel residual: the mid node is the block input; the block's mixing sits in mid -> out."""
    model = tiny("gpt_neox")
    assert not architecture_of(model).mlp_is_token_wise(model)
    assert architecture_of(tiny("gpt_neox_serial")).mlp_is_token_wise(tiny("gpt_neox_serial"))
    _, ref = matrices(model, "cp", "packed", "packed", batch_size=5)
    off_diagonal = ref["0.mid"] - torch.diag(torch.diag(ref["0.mid"]))
    assert off_diagonal.abs().max() > 1e-3


@pytest.mark.parametrize("family", ["phi3", "qwen2_moe", "olmo3"])
def test_refine_adds_up(family):
    model = tiny(family)
    ids = tiny_ids()
    g = build_graph(model, ids, POS, TGT, CON, node_threshold=0.0, prune=None)
    out = refine(model, g, [g.final_node], top_dims=model.config.hidden_size)
    entry = out["nodes"][g.final_node]
    assert entry["relevance"] == pytest.approx(g.relevance_of(g.final_node), abs=1e-5)
    assert sum(x["relevance"] for x in entry["dims"]) == pytest.approx(entry["relevance"], abs=1e-5)
