"""The harness's faster host paths give what the slow ones gave: batched sequence contrasts, compiled task templates,
token texts, the strict JSON writer."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_ids, tiny_model

from arch_zoo import single_thread  # noqa: F401 - the autouse fixture: one intra-op thread for tiny models
from lm_eval_lrp.artifacts import AttributionWriter, read_records
from lm_eval_lrp.lrp import ExplainError, explain_sequences
from lm_eval_lrp.lrp.sequences_batched import explain_sequences_batch, explain_sequences_many

TRIPLES = [((10, 3, 2), 1), ((4, 1, 5), 2), ((17, 2, 2), 3), ((6, 4, 1), 4), ((3, 3, 3), 5)]


def _triples():
    return [(tiny_ids(n, seed=s).tolist(), tiny_ids(k, seed=s + 50).tolist(), tiny_ids(j, seed=s + 90).tolist())
            for (n, k, j), s in TRIPLES]


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
@pytest.mark.parametrize("rule", ["attnlrp", "cp"])
def test_batched_sequences_equal_one_at_a_time(arch, rule):
    model = tiny_model(arch)
    triples = _triples()
    out = explain_sequences_many(model, triples, batch_size=3, rule=rule)
    for t, got in zip(triples, out):
        ref = explain_sequences(model, *t, rule=rule)
        assert (got.context_ids, got.wrong_ids, got.gold_ids) == (ref.context_ids, ref.wrong_ids, ref.gold_ids)
        assert got.logprob_wrong == pytest.approx(ref.logprob_wrong, abs=1e-5)
        assert got.logprob_gold == pytest.approx(ref.logprob_gold, abs=1e-5)
        assert got.delta == pytest.approx(ref.delta, abs=1e-5)
        scale = float(ref.context_relevance.abs().max())
        assert float((got.context_relevance - ref.context_relevance).abs().max()) <= 1e-4 * scale
        assert got.context_relevance.shape == (len(t[0]),) and got.rule == rule


def test_a_bad_triple_costs_only_itself():
    model = tiny_model("llama")
    triples = _triples()
    triples[2] = (triples[2][0], [5, 6], [5, 6])  # identical continuations
    with pytest.raises(ValueError, match="identical"):
        explain_sequences_batch(model, triples)
    out = explain_sequences_many(model, triples, batch_size=4)
    assert isinstance(out[2], ExplainError) and "identical" in out[2].error and out[2].index == 2
    assert all(not isinstance(o, ExplainError) for i, o in enumerate(out) if i != 2)
    ref = explain_sequences(model, *triples[0])
    assert out[0].delta == pytest.approx(ref.delta, abs=1e-5)


def _sharing_triples():
    """Continuations that agree for 0, 1, 2 tokens, one a prefix of the other (both ways), one token each."""
    c = lambda n, seed: tiny_ids(n, seed=seed).tolist()  # noqa: E731
    return [(c(9, 1), [5, 7, 9], [5, 7, 11, 12]), (c(6, 2), [4], [8, 2]), (c(12, 3), [6, 6], [6, 6, 3]),
            (c(7, 4), [3, 9, 9, 4], [3, 9]), (c(10, 5), [5, 1], [7, 1]), (c(4, 6), [2], [3]),
            (c(11, 7), [8, 2, 4], [8, 5, 4])]


def _bitwise_equal(got, ref) -> None:
    for a, b in zip(got, ref):
        assert torch.equal(a.context_relevance, b.context_relevance)
        assert (a.logprob_wrong, a.logprob_gold, a.delta) == (b.logprob_wrong, b.logprob_gold, b.delta)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
@pytest.mark.parametrize("rule", ["attnlrp", "cp"])
def test_shared_head_rows_equal_every_row_computed(arch, rule):
    """The head computed once where a triple's rows agree (lrp/shared_head.py): the same numbers, bit for bit."""
    from lm_eval_lrp.lrp.shared_head import shared_head

    model = tiny_model(arch)
    triples = _sharing_triples()
    for chunk in (triples, triples[:3], triples[5:6]):
        _bitwise_equal(explain_sequences_batch(model, chunk, rule=rule),
                       explain_sequences_batch(model, chunk, rule=rule, share=False))
    calls = []
    import lm_eval_lrp.lrp.sequences_batched as sb

    def spy(*args):
        calls.append(shared_head(*args))
        return calls[-1]

    sb.shared_head, inner = spy, sb.shared_head
    try:
        explain_sequences_batch(model, triples, rule=rule)
    finally:
        sb.shared_head = inner
    assert calls and calls[0] is not None  # the shared path ran


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_shared_head_rows_equal_in_bfloat16(arch):
    model = tiny_model(arch).to(torch.bfloat16)
    triples = _sharing_triples()
    _bitwise_equal(explain_sequences_batch(model, triples), explain_sequences_batch(model, triples, share=False))


def test_shared_head_with_a_bias_and_unshareable_heads():
    """A head with a bias is shared (the same numbers); a head with logit scaling is computed row by row."""
    from lm_eval_lrp.lrp.shared_head import shareable_head

    model = tiny_model("llama")
    old = model.get_output_embeddings()
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    model.set_output_embeddings(head)
    assert shareable_head(model) is head
    triples = _sharing_triples()
    _bitwise_equal(explain_sequences_batch(model, triples), explain_sequences_batch(model, triples, share=False))
    for t, got in zip(triples, explain_sequences_batch(model, triples)):
        ref = explain_sequences(model, *t)
        assert got.delta == pytest.approx(ref.delta, abs=1e-5)
    model.config.logits_scaling = 2.0
    assert shareable_head(model) is None
    _bitwise_equal(explain_sequences_batch(model, triples), explain_sequences_batch(model, triples, share=False))


def test_token_texts_equal_decode_and_follow_each_tokenizer():
    from transformers import AutoTokenizer

    sys.path.insert(0, str(Path(__file__).parent))
    import tiny_harness as th

    from lm_eval_lrp.token_text import token_texts

    tok = AutoTokenizer.from_pretrained(th.smollm2_dir(), gguf_file=th.SMOLLM2_GGUF)
    ids = tok.encode("Question: héllo 🙂 12 + 7 =\n Answer: 19") + [tok.eos_token_id]
    assert token_texts(tok, ids) == [tok.decode([i]) for i in ids]
    assert token_texts(tok, ids) == [tok.decode([i]) for i in ids]  # from the cache, the same

    class Upper:  # another tokenizer: its own texts, not the first one's
        def decode(self, ids):
            return tok.decode(ids).upper()

    assert token_texts(Upper(), ids[:3]) == [tok.decode([i]).upper() for i in ids[:3]]


def test_writer_lines_as_before_and_non_finite_as_null(tmp_path):
    import jsonlines

    rec = {"task": "t", "doc_id": 1, "status": "attributed", "tokens": ["é", "🙂", "\n"], "input_relevance": [0.5, -1e-7],
           "nested": {"a": [1, 2.5], "b": None}}
    with AttributionWriter(tmp_path / "new.jsonl") as w:
        w.write(rec, torch.ones(3, 2), ["embed", "0.mid", "0.out"])
        w.write({**rec, "doc_id": 2, "delta": float("nan"), "status": "error"})
    with open(tmp_path / "old.jsonl", "w", encoding="utf-8") as fh:  # what the jsonlines writer alone wrote
        jsonlines.Writer(fh, compact=True).write({**rec, "node_relevance_file": "new.nodes/1.safetensors"})
    lines = (tmp_path / "new.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines[0] == (tmp_path / "old.jsonl").read_text(encoding="utf-8").strip()
    assert json.loads(lines[1])["delta"] is None
    back = read_records(tmp_path / "new.jsonl")
    assert [r["doc_id"] for r in back] == [1, 2] and not any(isinstance(v, float) and math.isnan(v) for v in back[1].values())
    assert (tmp_path / "new.nodes" / "1.safetensors").is_file()


@pytest.fixture(scope="module")
def local_tasks(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "local_tasks"))
    import make_tasks
    from lm_eval.tasks import TaskManager

    import tiny_harness as th

    root = tmp_path_factory.mktemp("templates")
    th.write_tasks(root)
    out = make_tasks.write_local_tasks(root / "stock", tasks=["arc_easy", "gsm8k"])
    manager = TaskManager(include_path=[str(out), str(root / "tasks")])
    return manager.load(["arc_easy", "gsm8k", "tiny_mc", "tiny_gen"])["tasks"]


@pytest.mark.slow  # loads the local arc_easy and gsm8k datasets
def test_compiled_templates_render_what_lm_eval_renders(local_tasks):
    from lm_eval_lrp.lmeval.templates import compiled

    checked = 0
    for name, task in local_tasks.items():
        docs = list(task.eval_docs)[:20]
        for method in ("doc_to_text", "doc_to_choice"):
            if method == "doc_to_choice" and task.config.doc_to_choice is None:
                continue
            fast = compiled(task, method)
            for doc in docs:
                assert fast(doc) == getattr(task, method)(doc), (name, method)
                checked += 1
    assert checked >= 80
    # the tiny tasks' templates are rendered by the compiled path, not handed back unchanged
    assert compiled(local_tasks["tiny_mc"], "doc_to_choice") != local_tasks["tiny_mc"].doc_to_choice


def test_kept_pair_encodings_are_what_was_encoded():
    from lm_eval_lrp.lmeval.encodings import PairEncodings

    kept = PairEncodings()
    kept.keep("Q: 1+1?", " 2", ([5, 6, 7], [8]))
    kept.keep("Q: 1+1?", " 3", ([5, 6, 7], [9, 10]))
    kept.keep("Q: 2+2?", " 4", ([5, 6, 11], [12]))
    assert kept.get("Q: 1+1?", " 3") == ([5, 6, 7], [9, 10]) and kept.get("Q: 2+2?", " 4") == ([5, 6, 11], [12])
    assert kept.get("Q: 1+1?", " 4") is None and len(kept) == 3
    first = kept.get("Q: 1+1?", " 2")
    first[0].append(99)  # fresh lists: a caller's change never reaches the kept ids
    assert kept.get("Q: 1+1?", " 2") == ([5, 6, 7], [8])
    kept.keep("Q: 1+1?", " 5", ([4, 6, 7], [13]))  # other ids for a context already kept: its own
    assert kept.get("Q: 1+1?", " 5") == ([4, 6, 7], [13]) and kept.get("Q: 1+1?", " 2")[0] == [5, 6, 7]


def test_prompt_spans_of_a_batch_equal_one_at_a_time():
    from transformers import AutoTokenizer

    sys.path.insert(0, str(Path(__file__).parent))
    import tiny_harness as th

    from lm_eval_lrp.segments import char_spans, char_spans_many

    tok = AutoTokenizer.from_pretrained(th.smollm2_dir(), gguf_file=th.SMOLLM2_GGUF)
    texts = ["Question: héllo 🙂 12 + 7 =\nAnswer:", "Q: 3\n\nQ: 4 ?", "  spaces  around"]
    ids = [tok.encode(t, add_special_tokens=False) for t in texts]
    ids[1] = [tok.bos_token_id or 0] + ids[1]  # a prefix token: an empty span
    ids[2] = ids[2][:-1]  # does not align: None
    assert char_spans_many(tok, texts, ids) == [char_spans(tok, t, i) for t, i in zip(texts, ids)]
    assert char_spans_many(tok, texts, ids)[2] is None and char_spans_many(tok, [], []) == []
