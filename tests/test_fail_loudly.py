"""Fail loudly, lose nothing: each fault injected where it happens, and what the user sees — the exit status, the
message, the records — asserted through the real command (``python -m lm_eval_lrp``) on tiny models and tasks."""

from __future__ import annotations

import json

import pytest

import tiny_harness as th
from lm_eval_lrp.outcome import ATTRIBUTION_FAILED, exit_code, problems

CODE_YAML = """task: humaneval_tiny
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{canonical_solution}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 6
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""
# the model's output follows ``x[10] + ``: it compiles, and check() crashes on the output's line (IndexError)
CODE_ROWS = [{"prompt": "def f(x):\n    return x[10] + ", "test": "def check(c):\n    assert c([1]) == 1\n",
              "entry_point": "f", "canonical_solution": "x[0]"}]

BROKEN_HOOK = '''
from task_hooks.base import TaskHook


class Broken(TaskHook):
    families = ("tiny_big",)

    def segments(self, task, doc, prompt):
        raise TypeError("injected: this hook cannot label any prompt")


HOOK = Broken()
'''


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("loud")
    tasks = th.write_extra_tasks(root, n_big=20)
    (tasks / "gsm8k_tiny.yaml").write_text(th.GEN_YAML.format(name="gsm8k_tiny", data=root / "gen.jsonl",
                                                              target="{{answer.split('#### ')[-1]}}"))
    with open(root / "code.jsonl", "w") as fh:
        for r in CODE_ROWS:
            fh.write(json.dumps(r) + "\n")
    (tasks / "humaneval_tiny.yaml").write_text(CODE_YAML.format(data=root / "code.jsonl"))
    hooks = root / "hooks"
    hooks.mkdir()
    (hooks / "broken.py").write_text(BROKEN_HOOK)
    return {"root": root, "model": th.build(root), "biased": th.build_biased(root), "tasks": tasks, "hooks": hooks}


def _args(world, out, tasks, *extra, model=None):
    return ["--model", "hf", "--model_args", f"pretrained={model or world['model']}", "--include_path",
            str(world["tasks"]), "--tasks", tasks, "--device", "cpu", "--output_path", str(out), *extra]


def _tail(proc, n=3):
    return [line for line in proc.stderr.splitlines() if line.strip()][-n:]


# --- the rules of the exit status ---------------------------------------------------------------------------


def _task(explained, errors, **extra):
    return {"explained": explained, "errors": errors, **extra}


def test_exit_status_rules():
    assert exit_code([]) == (0, [])
    assert exit_code([({}, False)]) == (0, [])  # another rank, or nothing attributed
    fine = {"tasks": {"a": _task(4, {"out of memory": 1})}}  # 1 of 4: below half
    assert exit_code([(fine, False)]) == (0, [])
    half = {"tasks": {"a": _task(4, {"out of memory": 1, "TypeError: x": 1})}}
    code, lines = exit_code([(fine, False), (half, False)])
    assert code == ATTRIBUTION_FAILED == 3
    assert "a: 2 of 4 attempted failures ended as errors" in lines[0] and "rerun the same command" in lines[0]
    assert "exit status 3" in lines[-1] and "--lrp_allow_errors" in lines[-1]
    assert exit_code([(half, True)])[0] == 0 and "because of --lrp_allow_errors" in exit_code([(half, True)])[1][-1]
    assert "attribution failed: boom" in problems({"error": "boom"})[0]
    assert "cannot write" in problems({"unwritten": "cannot write", "tasks": {}})[0]
    stopped = {"tasks": {"a": _task(5, {"TypeError: x": 5}, stopped="attribution stopped: ...")}}
    assert problems(stopped) == ["a: attribution stopped: ..."]  # one line per cause, not two


# --- a systematic bug: stopped within the first documents, one message, traceback saved, rerun resumes -------


@pytest.mark.slow
def test_a_hook_broken_on_every_document_stops_the_task_and_a_rerun_resumes(world):
    out = world["root"] / "systematic"
    args = _args(world, out, "tiny_big", "--lrp", "--lrp_min_delta", "0")
    proc = th.run_cli([*args, "--lrp_hooks_path", str(world["hooks"])], world["root"])
    assert proc.returncode == ATTRIBUTION_FAILED, proc.stderr[-3000:]
    err = proc.stderr.replace("\n", " ")
    assert err.count("attribution stopped: the same TypeError at broken.py") == 2  # said once, and in the last lines
    assert "injected: this hook cannot label" in err and " doc " not in err.split("attribution stopped")[0][-200:]
    assert "tiny_big: attribution stopped" in _tail(proc, 2)[0] and "exit status 3" in _tail(proc, 1)[0]
    trace = th.model_dir(out) / "lrp_traceback_tiny_big.txt"
    assert "TypeError: injected" in trace.read_text() and "Traceback" in trace.read_text()
    res = th.results_json(out)  # lm-eval's results are complete
    assert res["results"]["tiny_big"]["acc,none"] is not None and res["n-samples"]["tiny_big"]["effective"] == 20
    summary = res["lrp"]["tasks"]["tiny_big"]
    assert summary["stopped"].startswith("attribution stopped") and res["lrp"]["problems"]
    written = th.records(out, "tiny_big")
    assert len(written) == 5 and all(r["status"] == "error" and "TypeError: injected" in r["reason"] for r in written)
    assert summary["failures"] > 5  # stopped early: the rest were never attempted

    fixed = th.run_cli(args, world["root"])  # the hook fixed (here: left out); the same folder
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    after = th.records(out, "tiny_big")
    assert len(after) == summary["failures"] and all(r["status"] != "error" for r in after)
    assert len({r["doc_id"] for r in after}) == len(after)
    assert len(list(th.model_dir(out).glob("attributions_tiny_big_*.jsonl"))) == 1  # resumed, not a new file


@pytest.mark.slow
def test_allow_errors_keeps_exit_status_zero_and_says_why(world):
    out = world["root"] / "allowed"
    proc = th.run_cli(_args(world, out, "tiny_big", "--lrp", "--lrp_hooks_path", str(world["hooks"]),
                            "--lrp_allow_errors"), world["root"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "attribution stopped" in proc.stderr and "because of --lrp_allow_errors" in _tail(proc, 1)[0]


# --- the default chains end to end: which locator, why, where -----------------------------------------------


@pytest.mark.slow
def test_default_math_chain_end_to_end(world):
    out = world["root"] / "math"
    proc = th.run_cli(_args(world, out, "gsm8k_tiny", "--lrp", "--lrp_min_delta", "0", "--lrp_rollouts", "2",
                            "--lrp_rollout_tokens", "6", model=world["biased"]), world["root"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = th.records(out, "gsm8k_tiny")
    assert len(recs) == len(th.GEN_ROWS)  # the biased model answers 777777 to every question: all wrong
    for r in recs:
        assert r["model_output"] == "777777"
        loc = r["locate"]
        assert loc["chain"] == ["trajectory+hindsight", "arithmetic", "rollout", "gold"]
        assert r["locator"] == loc["locator"] == "trajectory"
        assert "777777" in loc["reason"]
        assert r["output_offset"] == 0 and loc["output_tokens"] == "generated"
        assert r["status"] == "attributed" and r["target"]["token"] == "7"


@pytest.mark.slow
def test_default_code_chain_end_to_end(world):
    out = world["root"] / "code"
    proc = th.run_cli(_args(world, out, "humaneval_tiny", "--lrp", "--lrp_min_delta", "0", "--lrp_rollouts", "2",
                            "--lrp_rollout_tokens", "6", model=world["biased"]), world["root"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (r,) = th.records(out, "humaneval_tiny")
    assert r["model_output"] == "777777"
    loc = r["locate"]
    assert loc["chain"] == ["code", "crash", "coverage", "rollout", "gold"]
    assert [a["status"] for a in loc["attempts"]] == ["not_found", "located"]  # it compiles; the tests crash
    assert r["locator"] == "crash"
    assert loc["reason"].startswith("the task's tests raise IndexError: list index out of range at line 1 of the output")
    assert 0 <= r["output_offset"] < len("777777") and r["target"]["token"] == "7"


# --- faults injected in this process (the command's own main), one per path -----------------------------------


def _main(argv) -> int:
    from lm_eval_lrp.cli import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
        raise SystemExit(0)
    return stop.value.code or 0


@pytest.mark.slow
def test_attribution_failing_as_a_whole_exits_3_after_the_results_are_saved(world, monkeypatch, capfd):
    import lm_eval_lrp.harness as harness

    def broken(*args, **kwargs):
        raise KeyError("injected: the attribution step itself")

    monkeypatch.setattr(harness, "attribute_run", broken)
    out = world["root"] / "whole"
    assert _main(_args(world, out, "tiny_mc", "--lrp")) == ATTRIBUTION_FAILED
    err = capfd.readouterr().err
    assert "attribution failed: KeyError: 'injected: the attribution step itself'" in err
    assert "exit status 3" in err.strip().splitlines()[-1]
    res = th.results_json(out)
    assert res["results"]["tiny_mc"]["acc,none"] is not None and "KeyError" in res["lrp"]["error"]
    out2 = world["root"] / "whole_allowed"
    assert _main(_args(world, out2, "tiny_mc", "--lrp", "--lrp_allow_errors")) == 0
    assert "because of --lrp_allow_errors" in capfd.readouterr().err


@pytest.mark.slow
def test_a_locator_broken_on_every_document_stops_within_the_first_documents(world, monkeypatch, capfd):
    from lm_eval_lrp.locate.gold import GoldLocator

    calls = {"n": 0}

    def broken(self, gen, ctx):
        calls["n"] += 1
        raise TypeError("injected: a locator bug")

    monkeypatch.setattr(GoldLocator, "locate", broken)
    out = world["root"] / "broken_locator"
    assert _main(_args(world, out, "tiny_gen", "--lrp", "--lrp_locate", "gold")) == ATTRIBUTION_FAILED
    err = capfd.readouterr().err
    assert calls["n"] == 5  # stopped after the first five documents
    assert err.count("tiny_gen: attribution stopped: the same TypeError at test_fail_loudly.py") == 2  # message + last lines
    assert "tiny_gen doc" not in err  # no per-document warnings besides the one message
    assert "TypeError: injected: a locator bug" in (th.model_dir(out) / "lrp_traceback_tiny_gen.txt").read_text()
    res = th.results_json(out)
    assert res["results"]["tiny_gen"]["exact_match,none"] is not None and res["lrp"]["tasks"]["tiny_gen"]["stopped"]
    assert [r["status"] for r in th.records(out, "tiny_gen")] == ["error"] * 5


@pytest.mark.slow
def test_half_the_failures_ending_as_errors_exits_3(world, monkeypatch, capfd):
    import torch

    import lm_eval_lrp.harness.attribute as attribute

    real, calls = attribute.explain, {"n": 0}

    def every_other(model, ids, *a, **k):  # out of memory is not a bug: no systematic stop, but half are errors
        calls["n"] += 1
        if calls["n"] % 2:
            raise torch.OutOfMemoryError("injected: out of memory")
        return real(model, ids, *a, **k)

    monkeypatch.setattr(attribute, "explain", every_other)
    out = world["root"] / "half"
    assert _main(_args(world, out, "tiny_big", "--lrp", "--lrp_min_delta", "0", "--limit", "8")) == ATTRIBUTION_FAILED
    err = capfd.readouterr().err
    recs = th.records(out, "tiny_big")
    n_err = sum(r["status"] == "error" for r in recs)
    assert n_err == (len(recs) + 1) // 2 and n_err * 2 >= len(recs)
    assert f"tiny_big: {n_err} of {len(recs)} attempted failures ended as errors (most often, {n_err}×: out of memory)" in err
    assert all(r["advice"].startswith("out of memory during attribution") for r in recs if r["status"] == "error")


@pytest.mark.slow
def test_a_write_failing_mid_run_keeps_what_was_written_and_exits_3(world, monkeypatch, capfd):
    import errno

    from lm_eval_lrp.artifacts import AttributionWriter

    real = AttributionWriter.write

    def full_disk(self, record, *a, **k):
        if self.count >= 2:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return real(self, record, *a, **k)

    monkeypatch.setattr(AttributionWriter, "write", full_disk)
    out = world["root"] / "diskfull"
    assert _main(_args(world, out, "tiny_big", "--lrp", "--lrp_min_delta", "0", "--limit", "8")) == ATTRIBUTION_FAILED
    err = capfd.readouterr().err
    assert "attribution failed: OSError: [Errno 28] No space left on device (injected)" in err
    assert len(th.records(out, "tiny_big")) == 2  # both records written before the disk filled are intact
    assert th.results_json(out)["results"]["tiny_big"]["acc,none"] is not None


@pytest.mark.slow
def test_a_bug_of_the_batched_path_is_logged_and_counted(world, monkeypatch, caplog):
    import lm_eval
    import lm_eval_lrp
    import lm_eval_lrp.lrp.batched as batched

    real = batched.explain_batch

    def batched_only_bug(model, contrasts, **kw):
        if len(contrasts) > 1:
            raise TypeError("injected: a bug of batches only")
        return real(model, contrasts, **kw)

    monkeypatch.setattr(batched, "explain_batch", batched_only_bug)
    lm_eval_lrp.install()
    res = lm_eval.simple_evaluate(model="hf-lrp", model_args={"pretrained": str(world["model"]), "lrp_min_delta": 0.0,
                                                              "lrp_batch_size": 4},
                                  tasks=["tiny_mc"], device="cpu", log_samples=False,
                                  task_manager=lm_eval.tasks.TaskManager(include_path=str(world["tasks"])))
    s = res["lrp"]["tasks"]["tiny_mc"]
    assert s["attributed"] == s["failures"] and not s["errors"]  # each redone alone: nothing lost
    (cause, n), = s["fallbacks"].items()
    assert cause == "batch retried one by one after TypeError: injected: a bug of batches only" and n >= 1
    said = [r for r in caplog.records if "injected: a bug of batches only" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "WARNING"  # once per cause, not per batch


def test_a_hook_that_cannot_build_the_gold_raises_naming_it():
    from lm_eval_lrp.lmeval.tasks import TaskView
    from task_hooks.base import HookError, TaskHook

    view = TaskView(name="t", output_type="generate_until", target_delimiter=" ", _doc_to_choice=lambda d: d["choices"])
    with pytest.raises(HookError, match=r"hook TaskHook could not build the gold \(doc_to_choice\) for document 7: "
                                        r"KeyError: 'choices'"):
        TaskHook().gold_continuation(view, {}, {"target": 1, "doc_id": 7})
    assert TaskHook().gold_continuation(view, {"choices": ["a", "b"]}, {"target": 1}) == " b"
    no_choices = TaskView(name="t", output_type="generate_until", has_choices=False)
    assert TaskHook().gold_continuation(no_choices, {}, {"target": 12}) == " 12"  # the int is the answer


@pytest.mark.slow
def test_a_run_whose_hook_cannot_build_the_gold_names_it_in_every_record(world, monkeypatch):
    """Through a run: every document's record names the hook and the document, and no gold is made up."""
    from lm_eval_lrp.lmeval.tasks import TaskView

    def broken(self, doc):
        raise KeyError("choices")

    monkeypatch.setattr(TaskView, "doc_to_choice", broken)
    out = world["root"] / "goldless"
    (world["tasks"] / "tiny_intgen.yaml").write_text(
        th.GEN_YAML.format(name="tiny_intgen", data=world["root"] / "mc.jsonl", target="{{label}}")
        .replace('doc_to_target: "{{label}}"', 'doc_to_target: label\ndoc_to_choice: "{{choices}}"'))
    code = _main(_args(world, out, "tiny_intgen", "--lrp", "--lrp_locate", "gold", "--limit", "3"))
    recs = th.records(out, "tiny_intgen")
    assert recs and code == ATTRIBUTION_FAILED
    for r in recs:
        assert r["status"] == "error" and not r.get("gold")
        assert f"hook GenerateUntilHook could not build the gold (doc_to_choice) for document {r['doc_id']}" in r["reason"]


# --- fallbacks of the engine: written once per cause, never hiding a bug -------------------------------------


def _explained(model, ids):
    import torch

    with torch.no_grad():
        top = model(ids[None]).logits[0, -1].topk(2).indices.tolist()
    return top[0], top[1]


def test_graph_fallback_is_written_into_the_graph_once_per_cause(monkeypatch, tmp_path):
    from conftest import tiny_ids, tiny_model

    import lm_eval_lrp.graph.attention as attention
    import lm_eval_lrp.graph.edges as edges
    from lm_eval_lrp.graph import build_graph, load_graph

    model, ids = tiny_model("llama"), tiny_ids(10)
    target, contrast = _explained(model, ids)
    packed = build_graph(model, ids.tolist(), -1, target, contrast, method="packed", batch_size=4)
    assert "fallbacks" not in packed.meta

    monkeypatch.setattr(attention, "closed_form_attention_rows", lambda *a, **k: None)  # no closed form here

    def no_vmap(*a, **k):
        raise RuntimeError("Batching rule not implemented for aten::injected")

    monkeypatch.setattr(edges, "batched_rows", no_vmap)
    g = build_graph(model, ids.tolist(), -1, target, contrast, method="auto", batch_size=4)
    cause = "packed graph rows because the batched backward failed: RuntimeError: Batching rule not implemented for aten::injected"
    assert g.meta["fallbacks"] == {cause: 2}  # one cause, counted over the two blocks
    assert g.edge_weight.tolist() == pytest.approx(packed.edge_weight.tolist(), abs=1e-5)  # the same graph
    g.write(tmp_path / "g.json")
    assert load_graph(tmp_path / "g.json").meta["fallbacks"] == {cause: 2}  # and it travels with the file

    def bug(*a, **k):
        raise TypeError("injected: a bug, not a missing vmap rule")

    monkeypatch.setattr(edges, "batched_rows", bug)
    with pytest.raises(TypeError, match="injected: a bug"):  # not hidden behind the packed path
        build_graph(model, ids.tolist(), -1, target, contrast, method="auto", batch_size=4)


def test_refine_fallback_is_reported_and_gives_the_same_numbers(monkeypatch):
    import torch
    from conftest import tiny_ids, tiny_model

    from lm_eval_lrp.graph import build_graph
    from lm_eval_lrp.graph.refine import refine

    model, ids = tiny_model("llama"), tiny_ids(10)
    target, contrast = _explained(model, ids)
    graph = build_graph(model, ids.tolist(), -1, target, contrast)
    usual = refine(model, graph, max_nodes=3)
    assert "fallbacks" not in usual
    real = torch.autograd.grad

    def no_vmap(*args, is_grads_batched=False, **kw):
        if is_grads_batched:
            raise RuntimeError("vmap: injected: no batching rule")
        return real(*args, **kw)

    monkeypatch.setattr(torch.autograd, "grad", no_vmap)
    again = refine(model, graph, max_nodes=3)
    (cause, n), = again["fallbacks"].items()
    assert cause == "one seed at a time because the vmapped backward failed: RuntimeError: vmap: injected: no batching rule"
    assert n >= 1
    for node, entry in usual["nodes"].items():
        for d, e in zip(entry["dims"], again["nodes"][node]["dims"]):
            assert e["dim"] == d["dim"]
            for src, share in d.get("sources", {}).items():
                assert e["sources"][src] == pytest.approx(share, rel=1e-4, abs=1e-6)


def test_a_crash_locator_timeout_is_recorded_as_a_timeout():
    from lm_eval_lrp.locate import Chain, Context, Generation
    from lm_eval_lrp.locate.crash import CrashLocator
    from locate_helpers import CharTokenizer

    tok = CharTokenizer()
    output = "while True: pass"
    doc = {"prompt": "def f(x):\n    ", "test": "def check(c):\n    assert c(1) == 1\n", "entry_point": "f"}
    gen = Generation(tok.encode(doc["prompt"]), tok.encode(output), output, doc=doc)
    ctx = Context.from_tokenizer(tok, None).for_doc(lambda text: False)
    result = Chain([CrashLocator(timeout=0.5)]).locate(gen, ctx)
    (attempt,) = result.attempts
    assert attempt.status == "timeout" and "did not finish within 0.5 s" in attempt.reason
    assert result.location is None and "timeout" not in (result.error or "")


def test_a_hook_whose_doc_to_text_raises_is_named_not_unlabelled():
    from lm_eval_lrp.lmeval.tasks import TaskView
    from task_hooks.base import HookError, TaskHook

    def bad(doc):
        raise ValueError("needs more than the doc")

    view = TaskView(name="t", output_type="multiple_choice", _doc_to_text=bad)
    with pytest.raises(HookError, match=r"hook TaskHook could not label the prompt's segments \(doc_to_text\).*"
                                        r"ValueError: needs more than the doc"):
        TaskHook().segments(view, {"q": 1}, "Question: 1")
