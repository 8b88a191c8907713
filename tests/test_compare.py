"""``lm-eval-lrp compare``: A's failures re-explained on B's model (two tiny random models sharing one tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lm_eval_lrp.artifacts import AttributionWriter, load_run
from lm_eval_lrp.commands import compare as compare_cmd
from lm_eval_lrp.reexplain import TokenizerMismatch, check_tokenizers, compare
from lm_eval_lrp.segments import record_prompt_segments as prompt_segments
from lm_eval_lrp.failures import Case
from lm_eval_lrp.model_args import load_spec, parse_model_args
from lm_eval_lrp.lrp import explain
from lm_eval_lrp.record import explained_record
from task_hooks.base import Segment

STAMP = "2026-01-02T03-04-05.678901"
PROMPTS = ["Question: What is 1 plus 2?\nAnswer:", "Question: What is 3 plus 4?\nAnswer:",
           "Question: What is 5 plus 6?\nAnswer:", "Question: What is 2 plus 2?\nAnswer:"]


def _save(root: Path, name: str, tokenizer, layers: int, hidden: int, seed: int) -> Path:
    import transformers as T

    torch.manual_seed(seed)
    cfg = T.LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=256, vocab_size=len(tokenizer),
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    out = root / name
    T.AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _results(model_dir: Path, tasks=("tiny_gen",), acc=0.0) -> dict:
    return {"results": {t: {"alias": t, "exact_match,none": acc} for t in tasks},
            "configs": {t: {"task": t, "description": "", "fewshot_delimiter": "\n\n"} for t in tasks},
            "n-shot": {t: 0 for t in tasks},
            "config": {"model": "hf-lrp", "model_args": {"pretrained": str(model_dir), "lrp_min_delta": 0.0}},
            "lrp": {"rule": "attnlrp", "tasks": {t: {"metric": "exact_match", "accuracy": acc} for t in tasks}}}


def _records(model, tokenizer, task="tiny_gen") -> list[dict]:
    """Realistic records: the model's own top token (wrong) against the gold ' 3'."""
    out = []
    gold_id = tokenizer.encode(" 3", add_special_tokens=False)[0]
    for doc_id, prompt in enumerate(PROMPTS):
        ids = tokenizer.encode(prompt, add_special_tokens=False)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        logits[gold_id] = -1e9
        target = int(logits.argmax())
        case = Case(ids=ids, position=len(ids) - 1, target=target, contrast=gold_id, n_prompt=len(ids), prompt=prompt,
                    model_output=tokenizer.decode([target]), gold=" 3")
        expl = explain(model, ids, case.position, target, gold_id)
        base = {"task": task, "doc_id": doc_id, "doc_hash": f"h{doc_id}", "filter": "none", "kind": "generate_until",
                "metric": "exact_match", "metrics": {"exact_match": 0.0}, "prompt": prompt,
                "model_output": case.model_output, "gold": " 3"}
        out.append(explained_record(base, case, expl, tokenizer, [Segment("query", 0, len(prompt))], 0.01))
    return out


def _write(run_dir: Path, records: list[dict], results: dict, task="tiny_gen") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    with AttributionWriter(run_dir / f"attributions_{task}_{STAMP}.jsonl") as w:
        for r in records:
            w.write(r)
    (run_dir / f"results_{STAMP}.json").write_text(json.dumps(results))
    return run_dir


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import transformers as T

    import tiny_harness as th

    root = tmp_path_factory.mktemp("compare")
    tok = T.AutoTokenizer.from_pretrained(th.smollm2_dir(), gguf_file=th.SMOLLM2_GGUF)
    model_a = _save(root, "small", tok, layers=2, hidden=64, seed=0)
    model_b = _save(root, "large", tok, layers=3, hidden=96, seed=1)
    a = T.AutoModelForCausalLM.from_pretrained(model_a, dtype=torch.float32).eval()
    b = T.AutoModelForCausalLM.from_pretrained(model_b, dtype=torch.float32).eval()
    recs_a = _records(a, tok)
    run_a = _write(root / "run_a" / "small", recs_a, _results(model_a, acc=0.0))
    # B failed doc 1 too, on its own question (another token pair): that record must not be reused
    recs_b = [r for r in _records(b, tok) if r["doc_id"] == 1]
    run_b = _write(root / "run_b" / "large", recs_b, _results(model_b, acc=0.75))
    return {"root": root, "tok": tok, "a": a, "b": b, "run_a": run_a, "run_b": run_b, "recs_a": recs_a,
            "model_a": model_a, "model_b": model_b}


def test_delta_on_b_is_the_plain_logit_difference(world):
    s = compare(world["run_a"], world["run_b"])
    assert s["overall"]["cases"] == len(PROMPTS) and not s["errors"]
    for case, rec in zip(sorted(s["cases"], key=lambda c: c["doc_id"]), world["recs_a"]):
        ids = rec["token_ids"]
        with torch.no_grad():
            logits = world["b"](torch.tensor([ids])).logits[0, rec["position"]]
        plain = float(logits[rec["target"]["id"]] - logits[rec["contrast"]["id"]])
        assert case["delta_b"] == pytest.approx(plain, abs=1e-4)
        assert case["delta_a"] == pytest.approx(rec["delta"])
        assert case["corrected"] == (plain < 0)
        assert case["segments_match_run"]  # the query reconstruction reproduces A's recorded sums
        assert set(case["segments_b"]) == {"query"}
    by_doc = {c["doc_id"]: c for c in s["cases"]}
    assert by_doc[1]["b_outcome"] == "failed" and by_doc[0]["b_outcome"] == "right"
    b_own = load_run(world["run_b"])["tiny_gen"].by_doc_id()[1]
    if b_own["target"]["id"] != by_doc[1]["target"]["id"]:
        assert not by_doc[1]["b_record_same_question"]
        assert by_doc[1]["delta_b"] != pytest.approx(b_own["delta"])
    acc = s["accuracy"][0]
    assert (acc["task"], acc["a"], acc["b"], acc["difference"]) == ("tiny_gen", 0.0, 0.75, 0.75)
    assert s["overall"]["corrected"] == sum(c["corrected"] for c in s["cases"])
    assert "vocabularies identical" in " ".join(s["notes"])


def test_cli_writes_html_and_json(world, capsys):
    out = world["root"] / "cmp"
    rc = compare_cmd.main([str(world["run_a"].parent), str(world["run_b"].parent), "--output", str(out), "--device", "cpu"])
    assert rc == 0
    html = (out / "compare.html").read_text()
    data = json.loads((out / "compare.json").read_text())
    assert data["format"] == "lm-eval-lrp-compare/2" and len(data["runs"]) == 2
    (pair,) = data["comparisons"]
    assert pair["format"] == "lm-eval-lrp-compare/1" and len(pair["cases"]) == len(PROMPTS)
    assert len(data["trend"]["cases"]) == len(PROMPTS)
    assert "Run 1 vs run 2" in html and "Δℓ on B" in html and "y = x" in html and html.count("<script>") == 1
    assert "http://" not in html and "https://" not in html
    assert "corrected" in capsys.readouterr().out


def test_three_runs_end_to_end_default_output_beside_run_1(world, capsys):
    """Three sizes: run 1's failures on runs 2 and 3, trend lines, a per-case drill-down; output under run 1."""
    import transformers as T

    model_c = _save(world["root"], "larger", world["tok"], layers=4, hidden=128, seed=3)
    c = T.AutoModelForCausalLM.from_pretrained(model_c, dtype=torch.float32).eval()
    run_c = _write(world["root"] / "run_c" / "larger", [r for r in _records(c, world["tok"]) if r["doc_id"] == 2],
                   _results(model_c, acc=0.5))
    rc = compare_cmd.main([str(world["run_a"].parent), str(world["run_b"].parent), str(run_c.parent), "--device", "cpu"])
    assert rc == 0
    out = world["run_a"] / "compare"  # the first run's folder, not the working directory
    data = json.loads((out / "compare.json").read_text())
    t = data["trend"]
    assert len(data["runs"]) == 3 and len(data["comparisons"]) == 2
    assert [a["by_run"] for a in t["accuracy"]] == [[0.0, 0.75, 0.5]]
    for case in t["cases"]:
        assert len(case["delta"]) == 3 and all(isinstance(d, float) for d in case["delta"])
    with torch.no_grad():  # run 3's Δℓ is its model's own logit difference at run 1's position
        rec = world["recs_a"][0]
        logits = c(torch.tensor([rec["token_ids"]])).logits[0, rec["position"]]
    case0 = next(x for x in t["cases"] if x["doc_id"] == 0)
    assert case0["delta"][2] == pytest.approx(float(logits[rec["target"]["id"]] - logits[rec["contrast"]["id"]]), abs=1e-4)
    per = t["per_run"]
    assert per[0]["not_corrected"] == len(PROMPTS) and per[2]["corrected"] + per[2]["not_corrected"] == len(PROMPTS)
    html = (out / "compare.html").read_text()
    assert "Accuracy per run" in html and "Relevance by segment (mean share of Σ|R|)" in html and "Run 1 vs run 3" in html
    term = capsys.readouterr().out
    assert "run 3" in term and "0.7500" in term and "0.5000" in term


def test_nothing_to_compare_says_why(world, tmp_path, capsys):
    skipped = [{**r, "status": "skipped", "reason": "weak preference (delta <= 1)"} for r in world["recs_a"]]
    run_weak = _write(tmp_path / "weak" / "small", skipped, _results(world["model_a"], acc=0.0))
    rc = compare_cmd.main([str(run_weak), str(world["run_b"]), "--device", "cpu"])
    assert rc == 0
    term = capsys.readouterr().out
    assert "nothing was compared" in term and "4× skipped: weak preference" in term and "--lrp_min_delta" in term
    assert "nothing was compared" in (run_weak / "compare" / "compare.html").read_text()


def test_model_args_b_override_and_checkpoint_spec(world):
    s = compare(world["run_a"], world["run_b"], f"pretrained={world['model_a']}")  # B = A's own model: nothing changes
    for c in s["cases"]:
        assert c["delta_b"] == pytest.approx(c["delta_a"], abs=1e-5) and not c["corrected"]
    spec = load_spec(parse_model_args("pretrained=org/model,revision=step1000,dtype=bfloat16,lrp_rule=cp,gguf_file=m.gguf"))
    assert spec == {"pretrained": "org/model", "revision": "step1000", "gguf_file": "m.gguf"}


def test_tokenizer_mismatch_is_a_clear_error(world, tmp_path, capsys):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[UNK]", "Question", ":", "What", "is", "plus", "Answer", "?"] + [str(i) for i in range(10)])}
    tk = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = Whitespace()
    other = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", bos_token="[UNK]", eos_token="[UNK]")
    model_c = _save(tmp_path, "other", other, layers=1, hidden=32, seed=2)
    run_c = _write(tmp_path / "run_c", [], _results(model_c))
    with pytest.raises(TokenizerMismatch, match="tokenizers differ"):
        compare(world["run_a"], run_c)
    rc = compare_cmd.main([str(world["run_a"]), str(run_c), "--output", str(tmp_path / "o"), "--device", "cpu"])
    assert rc == 3
    assert "tokenizer mismatch" in capsys.readouterr().out
    # without A's tokenizer (its files gone), the records' token strings are checked on B
    with pytest.raises(TokenizerMismatch, match="decode differently"):
        check_tokenizers(world["recs_a"], other, None, vocab_size_b=len(vocab))


def test_prompt_segments_from_the_task_config():
    rec = {"task": "arc_easy", "prompt": "Pick one.\n\nQ: a?\nA: x\n\nQ: b?\nA: y\n\nQ: c?\nA:"}
    segs = prompt_segments(rec, {"description": "Pick one.\n\n", "fewshot_delimiter": "\n\n"}, 2)
    assert [(s.label, rec["prompt"][s.start:s.end]) for s in segs] == [
        ("instruction", "Pick one.\n\n"), ("fewshot", "Q: a?\nA: x\n\nQ: b?\nA: y\n\n"), ("query", "Q: c?\nA:")]
    he = {"task": "humaneval", "prompt": 'def f(x):\n    """Add one."""\n'}
    assert [s.label for s in prompt_segments(he, {}, 0, code=True)] == ["signature", "docstring"]
    assert [s.label for s in prompt_segments(he, {}, 0)] == ["query"]  # the caller says whether it is code


def test_the_task_name_says_whether_a_prompt_is_a_signature():
    """One place decides (task_kinds): the HumanEval hook labels a run's prompts so, and the report a stored one."""
    from lm_eval_lrp.lmeval.tasks import TaskView
    from lm_eval_lrp.task_kinds import has_signature_prompt, kind_of_task
    from task_hooks import HookRegistry

    assert has_signature_prompt("humaneval") and has_signature_prompt("humaneval_plus")
    assert not has_signature_prompt("mbpp") and not has_signature_prompt(None)
    assert kind_of_task("mbpp") == kind_of_task("humaneval") == "code"  # a code task, but its prompt is no signature
    prompt = 'def f(x):\n    """Add one."""\n'
    for task, labels in (("humaneval", ["signature", "docstring"]), ("mbpp", ["query"])):
        view = TaskView(task, "generate_until", _doc_to_text=lambda d: d["prompt"])
        hook = HookRegistry().for_task(task, "generate_until")
        assert [s.label for s in hook.segments(view, {"prompt": prompt}, prompt)] == labels
        record = {"task": task, "prompt": prompt}
        assert [s.label for s in prompt_segments(record, {}, 0, code=has_signature_prompt(task))] == labels


def test_a_run_is_compared_in_its_own_dtype_and_rule(world, tmp_path, capsys):
    """Run 1's model again in bfloat16, and again under CP-LRP: each is re-explained as it was run, and labelled so."""
    bf16 = _results(world["model_a"])
    bf16["config"]["model_args"]["dtype"] = "bfloat16"
    cp = _results(world["model_a"])
    cp["lrp"]["rule"] = "cp"
    run_bf16 = _write(tmp_path / "bf16" / "small", [], bf16)
    run_cp = _write(tmp_path / "cp" / "small", [], cp)
    s = compare(world["run_a"], run_bf16)
    assert (s["b"]["dtype"], s["b"]["rule"]) == ("bfloat16", "attnlrp") and "dtype=bfloat16" in s["b"]["name"]
    model = world["a"].to(torch.bfloat16)
    try:
        for c, rec in zip(sorted(s["cases"], key=lambda c: c["doc_id"]), world["recs_a"]):
            with torch.no_grad():
                logits = model(torch.tensor([rec["token_ids"]])).logits[0, rec["position"]].float()
            assert c["delta_b"] == pytest.approx(float(logits[rec["target"]["id"]] - logits[rec["contrast"]["id"]]), abs=2e-2)  # bf16 steps
    finally:
        world["a"].to(torch.float32)
    assert any(abs(c["delta_b"] - c["delta_a"]) > 1e-4 for c in s["cases"])  # not run 1's float32 model again
    s = compare(world["run_a"], run_cp)
    assert s["rule"] == "cp" and "rule=cp" in s["b"]["name"]
    for c in s["cases"]:  # same model: same Δℓ; CP-LRP conserves on this bias-free model, AttnLRP does not
        assert c["delta_b"] == pytest.approx(c["delta_a"], abs=1e-4)
        assert c["sum_b"] == pytest.approx(c["delta_b"], rel=1e-3, abs=1e-4)
    rc = compare_cmd.main([str(world["run_a"]), str(run_bf16), str(run_cp), "--output", str(tmp_path / "o"), "--device", "cpu"])
    assert rc == 0
    runs = json.loads((tmp_path / "o" / "compare.json").read_text())["runs"]
    assert [r["label"] for r in runs] == ["float32 attnlrp", "bfloat16 attnlrp", "float32 cp"]
    html = (tmp_path / "o" / "compare.html").read_text()
    assert "2: bfloat16 attnlrp" in html and "3: float32 cp" in html  # the trend lines' run labels tell them apart
    assert "run 3 (float32 cp)" in capsys.readouterr().out
    s = compare(world["run_a"], run_cp, dtype="float16", rule="attnlrp")  # given: every run in that dtype and rule
    assert (s["b"]["dtype"], s["rule"]) == ("float16", "attnlrp")
    with pytest.raises(ValueError, match="not a torch dtype"):
        compare(world["run_a"], run_cp, dtype="float33")


def test_a_tokenizer_that_fails_to_load_is_named(world, monkeypatch):
    """A's tokenizer failing to load is not a silent None: the summary's note says why, and every case is still
    compared (the per-record token check runs on A's recorded strings)."""
    import lm_eval_lrp.reexplain as cmp

    real, calls = cmp.load_tokenizer, {"n": 0}

    def first_fails(spec):
        calls["n"] += 1
        if calls["n"] == 1:  # A's, loaded first
            raise OSError("injected: tokenizer.json is gone")
        return real(spec)

    monkeypatch.setattr(cmp, "load_tokenizer", first_fails)
    s = compare(world["run_a"], world["run_b"])
    assert ("A's tokenizer could not be loaded (OSError: injected: tokenizer.json is gone): the check compared token "
            "strings of A's records only") in s["notes"]
    assert s["overall"]["cases"] == len(PROMPTS) and not s["errors"]
