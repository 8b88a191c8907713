"""Models dispatched by accelerate with offloaded layers (disk and CPU): the same relevance as the plain model.

accelerate's ``AlignDevicesHook`` loads an offloaded module's weights only inside its forward; outside, they are empty
``meta`` tensors. The LRP rules (forward hooks), the node recorder, the LM head's explained rows and the self-check
must read the real values and put inputs where the model computes; so must the attribution graphs (``--lrp_graph``)
and the deletion curves (``--lrp_faithfulness``).
"""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_ids, tiny_model

from lm_eval_lrp.lrp import explain, explain_many, explain_sequences
from lm_eval_lrp.lrp import self_check
from lm_eval_lrp.lrp.dispatch import execution_device, input_device, parameter
from lm_eval_lrp.lrp.target import Contrast


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def offloaded(arch: str, folder, placement: dict[str, str]):
    """The tiny model dispatched with ``placement`` (module prefix -> "cpu" | "disk"), the rest on the CPU."""
    from accelerate import dispatch_model

    model = tiny_model(arch)
    inner = "model" if hasattr(model, "model") else "transformer"
    device_map = {}
    for name, _ in getattr(model, inner).named_children():
        if name in ("layers", "h"):
            for i in range(len(getattr(getattr(model, inner), name))):
                key = f"{inner}.{name}.{i}"
                device_map[key] = placement.get(key, "cpu")
        else:
            key = f"{inner}.{name}"
            device_map[key] = placement.get(key, "cpu")
    device_map["lm_head"] = placement.get("lm_head", "cpu")
    return dispatch_model(model, device_map=device_map, offload_dir=str(folder))


PLACEMENTS = {
    "llama": {"model.embed_tokens": "disk", "model.layers.0": "disk", "model.norm": "disk", "lm_head": "disk"},
    "gpt2": {"transformer.wte": "disk", "transformer.h.1": "disk", "transformer.ln_f": "disk", "lm_head": "disk"},
    "gemma3": {"model.layers.1": "disk", "model.norm": "disk"},
}


def contrasts() -> list[Contrast]:
    return [Contrast(tuple(tiny_ids(n, seed=n).tolist()), pos, 5, 17) for n, pos in ((12, -1), (7, -1), (9, 4))]


@pytest.mark.parametrize("arch", sorted(PLACEMENTS))
def test_offloaded_layers_give_the_plain_models_relevance(arch, tmp_path):
    plain = tiny_model(arch)
    model = offloaded(arch, tmp_path, PLACEMENTS[arch])
    assert any(p.device.type == "meta" for p in model.parameters())  # really offloaded
    for rule in ("attnlrp", "cp"):
        ref = explain_many(plain, contrasts(), batch_size=3, rule=rule)
        got = explain_many(model, contrasts(), batch_size=3, rule=rule)
        for a, b in zip(got, ref):
            assert not isinstance(a, Exception) and a.delta == pytest.approx(b.delta, abs=1e-5)
            assert float((a.input_relevance - b.input_relevance).abs().max()) <= 1e-5
            assert float((a.node_relevance - b.node_relevance).abs().max()) <= 1e-5
            assert [i for i, _ in a.topk] == [i for i, _ in b.topk]
    one, ref_one = explain(model, list(contrasts()[0].ids), -1, 5, 17), explain(plain, list(contrasts()[0].ids), -1, 5, 17)
    assert float((one.input_relevance - ref_one.input_relevance).abs().max()) <= 1e-5
    seq, ref_seq = (explain_sequences(m, tiny_ids(8).tolist(), [4, 5], [6]) for m in (model, plain))
    assert float((seq.context_relevance - ref_seq.context_relevance).abs().max()) <= 1e-5
    # the empty tensors are back after every read: nothing of the model was loaded for good
    assert any(p.device.type == "meta" for p in model.parameters())


def test_the_self_check_passes_on_an_offloaded_model(tmp_path):
    figures = self_check(offloaded("llama", tmp_path, PLACEMENTS["llama"]))
    plain = self_check(tiny_model("llama"))
    assert figures["model_type"] == "llama"
    for key, value in plain.items():
        if isinstance(value, float) and "seconds" not in key:
            assert figures[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_devices_and_parameters_as_the_forward_sees_them(tmp_path):
    model = offloaded("llama", tmp_path, PLACEMENTS["llama"])
    plain = tiny_model("llama")
    head = model.get_output_embeddings()
    assert head.weight.device.type == "meta"
    assert execution_device(head).type == "cpu" and input_device(model).type == "cpu"
    assert torch.equal(parameter(head, "weight"), plain.get_output_embeddings().weight)
    assert head.weight.device.type == "meta"
    assert parameter(plain.model.norm, "weight") is plain.model.norm.weight  # plain models: their own tensors
    assert input_device(plain) == plain.get_input_embeddings().weight.device


def test_locating_on_an_offloaded_model_finds_what_the_plain_model_finds(tmp_path):
    """generate_until failures: the scan, greedy decoding and the batched rollouts place their inputs where the
    offloaded model computes, and search exactly as on the plain model."""
    import dataclasses

    from locate_helpers import CharTokenizer

    from lm_eval_lrp.locate import Budget, Context, Generation
    from lm_eval_lrp.locate.decoding import greedy_fresh
    from lm_eval_lrp.locate.rollout import RolloutLocator

    tok = CharTokenizer()
    plain, model = tiny_model("llama"), offloaded("llama", tmp_path, PLACEMENTS["llama"])
    prompt = tok.encode("Question: 7*8?")
    out = greedy_fresh(plain, prompt, 10)
    assert greedy_fresh(model, prompt, 10) == out
    gen = Generation(prompt, out, tok.decode(out))
    found = []
    for m in (plain, model):
        ctx = Context.from_tokenizer(tok, m, budget=Budget(max_rollouts=6, max_new_tokens=5, width=2))
        ctx = ctx.for_doc(lambda text: text[:3] != gen.output[:3])  # any change in the first 3 characters fixes it
        loc = RolloutLocator(min_alternative=1e-9).locate(gen, ctx)
        found.append((loc.index, loc.contrast, [dataclasses.asdict(r) for r in loc.rollouts]))
    assert found[0] == found[1]


def _same_graph(got, ref) -> None:
    assert got.layers == ref.layers and got.transitions == ref.transitions
    assert torch.equal(got.node_keys, ref.node_keys) and torch.equal(got.edge_source, ref.edge_source)
    assert torch.equal(got.edge_target, ref.edge_target)
    assert float((got.node_relevance - ref.node_relevance).abs().max()) <= 1e-5
    if ref.n_edges:
        assert float((got.edge_weight - ref.edge_weight).abs().max()) <= 1e-5


@pytest.mark.parametrize("arch", sorted(PLACEMENTS))
def test_graphs_on_an_offloaded_model_are_the_plain_models(arch, tmp_path):
    """--lrp_graph: every attention method (GPT-2's closed form strips its offloaded biases in forward hooks), every
    MLP method and the neuron-level refinement."""
    from lm_eval_lrp.graph import build_full_graph, build_graph, refine
    from lm_eval_lrp.graph.build import METHODS, MLP_METHODS

    plain = tiny_model(arch)
    model = offloaded(arch, tmp_path, PLACEMENTS[arch])
    ids = tiny_ids(10, seed=3).tolist()
    for method in METHODS:
        ref = build_graph(plain, ids, -1, 5, 17, method=method)
        _same_graph(build_graph(model, ids, -1, 5, 17, method=method), ref)
    for mlp in MLP_METHODS:
        ref = build_full_graph(plain, ids, -1, 5, 17, mlp=mlp, rule="cp")
        _same_graph(build_full_graph(model, ids, -1, 5, 17, mlp=mlp, rule="cp"), ref)
    ref = build_graph(plain, ids, -1, 5, 17)
    got = build_graph(model, ids, -1, 5, 17)
    _close(refine(model, got, max_nodes=4), refine(plain, ref, max_nodes=4))
    assert any(p.device.type == "meta" for p in model.parameters())


def _close(got, ref) -> None:
    if isinstance(ref, dict):
        assert set(got) == set(ref)
        for key in ref:
            _close(got[key], ref[key])
    elif isinstance(ref, (list, tuple)):
        assert len(got) == len(ref)
        for a, b in zip(got, ref):
            _close(a, b)
    elif isinstance(ref, float):
        assert got == pytest.approx(ref, abs=1e-5)
    else:
        assert got == ref


@pytest.mark.parametrize("arch", sorted(PLACEMENTS))
def test_faithfulness_on_an_offloaded_model_is_the_plain_models(arch, tmp_path):
    """--lrp_faithfulness: the masked and the replaced deletion curves, their areas and the flip counts."""
    from lm_eval_lrp.faithfulness import faithfulness

    plain = tiny_model(arch)
    model = offloaded(arch, tmp_path, PLACEMENTS[arch])
    ids = tiny_ids(10, seed=3).tolist()
    relevance = explain(plain, ids, -1, 5, 17).input_relevance
    for method in ("mask", "replace:3"):
        ref = faithfulness(plain, ids, -1, 5, 17, relevance, method=method)
        got = faithfulness(model, ids, -1, 5, 17, relevance, method=method)
        assert len(ref["curves"]) >= 4 and ref["flip"]
        _close(got, ref)  # curves, areas, beats, flips, delta
    assert any(p.device.type == "meta" for p in model.parameters())
