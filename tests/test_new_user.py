"""What a new user hits (issue #15): what is explained, options checked before the evaluation, honest summaries."""

from __future__ import annotations

import json

import pytest
import torch

import tiny_harness as th
from lm_eval_lrp.artifacts import read_records
from lm_eval_lrp.config import LRPConfig
from lm_eval_lrp.harness.subject import Subject
from lm_eval_lrp.record import Record, weak_record

WINO_ROWS = [
    {"sentence": f"{a} gave the book to {b} because _ was done reading it.", "option1": a, "option2": b, "answer": ans}
    for a, b, ans in [("Anna", "Ben", "1"), ("Carl", "Dora", "1"), ("Eve", "Finn", "2"), ("Gus", "Hana", "2"),
                      ("Ivy", "Jon", "1"), ("Kai", "Lea", "2")]
]

# the tiny multiple-choice task's YAML with winogrande's shape: the choices are contexts (doc_to_text gives the gold)
WINO_YAML = th.MC_YAML.replace("tiny_mc", "tiny_wino").split("doc_to_text:")[0] + """doc_to_text: "{{{{ 0 if answer == '1' else 1 }}}}"
doc_to_choice: "{{{{ [sentence.split('_')[0] + option1, sentence.split('_')[0] + option2] }}}}"
doc_to_target: "{{{{ sentence.split('_')[1].strip() }}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("newuser")
    tasks = th.write_tasks(root)
    with open(root / "wino.jsonl", "w") as fh:
        for r in WINO_ROWS:
            fh.write(json.dumps(r) + "\n")
    (tasks / "tiny_wino.yaml").write_text(WINO_YAML.format(data=root / "wino.jsonl"))
    return {"root": root, "model": th.build(root), "tasks": tasks}


def _evaluate(world, tasks, out=None, **lrp):
    import lm_eval

    import lm_eval_lrp

    lm_eval_lrp.install()
    args = {"pretrained": str(world["model"]), **{f"lrp_{k}": v for k, v in lrp.items()}}
    if out is not None:
        args["lrp_output_path"] = str(out)
    return lm_eval.simple_evaluate(model="hf-lrp", model_args=args, tasks=tasks, device="cpu", log_samples=True,
                                   task_manager=lm_eval.tasks.TaskManager(include_path=str(world["tasks"])))


def test_multiple_input_tasks_explain_what_lm_eval_scored(world):
    """winogrande-style: one continuation after two contexts; the record explains log p(cont | predicted context) −
    log p(cont | gold context), the quantity lm-eval compared — not the next token at the blank."""
    out = world["root"] / "wino"
    res = _evaluate(world, ["tiny_wino"], out, min_delta=0.0)
    wrong = {s["doc_id"]: s for s in res["samples"]["tiny_wino"] if s["acc"] < 1}
    assert wrong, "the tiny model should get some wrong"
    (path,) = sorted(th.model_dir(out).glob("attributions_tiny_wino_*.jsonl"))
    records = read_records(path)
    assert {r["doc_id"] for r in records} == set(wrong)
    for r in records:
        assert r["kind"] == "multiple_input" and r["objective"] == "context_pair"
        sample = wrong[r["doc_id"]]
        lls = [float(x[0]) for x in sample["filtered_resps"]]
        assert r["delta"] == pytest.approx(max(lls) - lls[1 - lls.index(max(lls))], abs=1e-3)  # lm-eval's own numbers
        assert r["delta"] >= 0  # the predicted context scored higher: never a "weak preference" with Δ < 0
        assert r["model_output"] != r["gold"]
        assert len(r["input_relevance"]) == len(r["tokens"]) and len(r["contrast_relevance"]) == len(r["contrast_tokens"])


def test_weak_and_negative_deltas_keep_their_relevance_and_say_what_happened():
    base = Record(task="t", doc_id=1, status="attributed", delta=-1.33, input_relevance=[0.1, 0.2])
    neg = weak_record(base, 1.0)
    assert neg.status == "skipped" and neg.weak and neg["input_relevance"] == [0.1, 0.2]
    assert "favours the gold" in neg["reason"] and "weak" not in neg["reason"]
    weak = weak_record(Record(base, delta=0.5), 1.0)
    assert weak["reason"] == "weak preference (delta <= 1)"


def test_the_explained_text_is_what_the_model_generated_from():
    """Under a chat template the assistant turn ends in a newline: the prompt ids are generate_until's encoding of the
    context, and a gold continuation is not given the delimiter's space."""
    from transformers import AutoTokenizer

    from lm_eval_lrp.harness.locating import Locating, gold_as_prompted
    from lm_eval_lrp.lmeval.samples import failure_of
    from lm_eval_lrp.lmeval.tasks import TaskView
    from task_hooks import HookRegistry

    tok = AutoTokenizer.from_pretrained(th.smollm2_dir(), gguf_file=th.SMOLLM2_GGUF)
    subject = Subject(model=None, tokenizer=tok, config=LRPConfig(locate="gold"), encode_pair=None,
                      generation_context=lambda c, n: [tok.bos_token_id or 0] + tok.encode(c, add_special_tokens=False))
    chat = "<|im_start|>user\nJanet has 3 eggs.<|im_end|>\n<|im_start|>assistant\n"
    task = TaskView("gsm8k", "generate_until")
    sample = {"doc": {"answer": "Janet sells 16 eggs."}, "arguments": [[chat, {"until": ["Q:"], "max_gen_toks": 32}]],
              "resps": [["Janet sells 13 eggs."]], "filter": "none"}
    gen = Locating(subject, task, HookRegistry().for_task("gsm8k", "generate_until")).generation(
        failure_of("gsm8k", 0, "generate_until", sample, "exact_match"))
    assert list(gen.prompt_ids) == [tok.bos_token_id or 0] + tok.encode(chat, add_special_tokens=False)
    assert list(gen.output_ids) == tok.encode("Janet sells 13 eggs.", add_special_tokens=False)
    assert gen.gold == "Janet sells 16 eggs." and gen.until == ("Q:",)
    assert gold_as_prompted("Question: 2+2?\nAnswer:", " 4") == " 4"
    # the tokens the model generated (recorded during the evaluation) win over a re-encoding of the text, even when
    # they are not the tokenizer's canonical split; what followed the stop sequence and the EOS are dropped
    own = [t for piece in ("Janet sel", "ls 13 eggs.") for t in tok.encode(piece, add_special_tokens=False)]
    assert own != tok.encode("Janet sells 13 eggs.", add_special_tokens=False)
    subject.generated = lambda ids: own + tok.encode("Q: next", add_special_tokens=False) + [tok.eos_token_id]
    locating = Locating(subject, task, HookRegistry().for_task("gsm8k", "generate_until"))
    gen = locating.generation(failure_of("gsm8k", 0, "generate_until", sample, "exact_match"))
    assert list(gen.output_ids) == own and locating.ids_source == "generated"


def test_bad_option_values_stop_before_the_evaluation(world):
    proc = th.run_cli(["--model", "hf", "--model_args", f"pretrained={world['model']}", "--tasks", "tiny_mc",
                       "--include_path", str(world["tasks"]), "--lrp", "--lrp_graph_prune", "bogus"], world["root"])
    assert proc.returncode != 0 and "lrp_graph_prune='bogus'" in proc.stderr and "mass:0.85" in proc.stderr
    assert "Running loglikelihood requests" not in proc.stderr


@pytest.mark.parametrize("option,valid", [("--lrp_metric", "acc_norm"), ("--lrp_filter", "none")])
def test_unknown_metric_or_filter_lists_the_valid_ones_before_evaluating(world, option, valid):
    proc = th.run_cli(["--model", "hf", "--model_args", f"pretrained={world['model']}", "--tasks", "tiny_mc",
                       "--include_path", str(world["tasks"]), "--device", "cpu", "--lrp", option, "nonexistent"],
                      world["root"])
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert f"{option} nonexistent" in proc.stderr and valid in proc.stderr
    assert "Running loglikelihood requests" not in proc.stderr  # nothing was evaluated
    assert "Traceback" not in proc.stderr


def test_summary_keeps_metric_accuracy_and_true_failure_count(world):
    res = _evaluate(world, ["tiny_mc"], max_failures=0)
    wrong = sum(1 for s in res["samples"]["tiny_mc"] if s["acc"] < 1)
    t = res["lrp"]["tasks"]["tiny_mc"]
    assert wrong > 0
    assert t["metric"] == "acc" and t["accuracy"] == res["results"]["tiny_mc"]["acc,none"]
    assert t["failures"] == wrong and t["explained"] == 0 and t["attributed"] == 0


def test_cli_prints_the_real_files_and_help_lists_the_subcommands(world):
    out = world["root"] / "files"
    proc = th.run_cli(["--model", "hf", "--model_args", f"pretrained={world['model']}", "--tasks", "tiny_mc",
                       "--include_path", str(world["tasks"]), "--device", "cpu", "--output_path", str(out), "--lrp",
                       "--lrp_min_delta", "100"], world["root"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = sorted(th.model_dir(out).glob("attributions_tiny_mc_*.jsonl"))
    assert f"attributions: {path}" in proc.stderr.replace("\n", "")
    assert "<task>" not in proc.stderr
    # every failure is a weak preference here: relevance kept, marked weak, out of the clean-case statistics
    records = read_records(path)
    assert records and all(r.status == "skipped" and r.weak and r["input_relevance"] for r in records)
    assert all(r["tokens"] and "truncated_tokens" in r for r in records)
    summary = json.loads(sorted(th.model_dir(out).glob("results_*.json"))[-1].read_text())["lrp"]["tasks"]["tiny_mc"]
    assert summary["attributed"] == 0 and summary["weak"] == len(records) and summary["median_delta"] is None
    help_text = th.run_cli(["--help"], world["root"]).stdout
    for sub in ("report", "compare", "graph"):
        assert f"lm-eval-lrp {sub}" in help_text


def test_a_garbage_line_is_named_not_dropped_silently(tmp_path):
    path = tmp_path / "attributions_t_2026-01-02T03-04-05.678901.jsonl"
    good = {"task": "t", "doc_id": 0, "status": "skipped", "reason": "x"}
    path.write_text(json.dumps(good) + "\nnot json at all\n" + json.dumps({"doc_id": 1}) + "\n")
    said = []
    records = read_records(path, warn=said.append)
    assert [r.doc_id for r in records] == [0]
    assert len(said) == 2 and f"{path}:2:" in said[0] and f"{path}:3:" in said[1] and "missing task" in said[1]


def test_explain_takes_a_contrast():
    from transformers import LlamaConfig, LlamaForCausalLM

    from lm_eval_lrp.lrp import Contrast, explain

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2)).eval()
    ids = [1, 5, 7, 9, 11]
    a = explain(model, ids, 3, 4, 6)
    b = explain(model, Contrast(ids, 3, 4, 6))
    assert torch.equal(a.input_relevance, b.input_relevance) and a.delta == b.delta
    with pytest.raises(ValueError, match="same token"):
        Contrast(ids, -1, 4, 4)
    with pytest.raises(IndexError):
        Contrast(ids, 5, 4, 6)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        explain(model, Contrast(ids, -1, 4, 99))
