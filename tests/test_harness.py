"""End to end through the real CLI (subprocess) on a tiny random model and tiny local tasks."""

from __future__ import annotations

import json

import pytest

import tiny_harness as th

TASKS = "tiny_mc,tiny_gen"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("harness")
    return {"root": root, "model": th.build(root), "tasks": th.write_tasks(root)}


def _args(world, out, tasks=TASKS, extra=()):
    return ["--model", "hf", "--model_args", f"pretrained={world['model']}", "--include_path", str(world["tasks"]),
            "--tasks", tasks, "--device", "cpu", "--output_path", str(out), *extra]


@pytest.fixture(scope="module")
def plain(world):
    out = world["root"] / "plain"
    proc = th.run_cli(_args(world, out, extra=["--log_samples"]), world["root"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def attributed(world):
    out = world["root"] / "lrp"
    proc = th.run_cli(_args(world, out, extra=["--log_samples", "--lrp", "--lrp_min_delta", "0", "--lrp_topk", "3"]),
                      world["root"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def _wrong_doc_ids(out, task, metric):
    return {s["doc_id"] for s in th.samples(out, task) if s[metric] < 1}


def test_accuracy_identical_with_and_without_lrp(plain, attributed):
    a, b = th.results_json(plain), th.results_json(attributed[0])
    assert a["results"] == b["results"]
    assert "lrp" not in a and "lrp" in b


def test_records_are_exactly_lm_evals_wrong_samples(plain, attributed):
    import lm_eval_lrp

    run = lm_eval_lrp.load_run(attributed[0])
    for task, metric in (("tiny_mc", "acc"), ("tiny_gen", "exact_match")):
        wrong = _wrong_doc_ids(plain, task, metric)
        assert wrong, f"the tiny model should fail some {task} documents"
        recs = run[task].records
        assert {r["doc_id"] for r in recs} == wrong
        assert len(recs) == len(wrong)
        # lined up with lm-eval's --log_samples lines by doc_id and doc hash
        by_id = {s["doc_id"]: s for s in th.samples(attributed[0], task)}
        for r in recs:
            assert r["doc_hash"] == by_id[r["doc_id"]]["doc_hash"]


def test_artifacts_load_back_and_make_sense(attributed):
    import lm_eval_lrp

    run = lm_eval_lrp.load_run(attributed[0])
    mc = run["tiny_mc"]
    attributed_recs = mc.attributed
    assert attributed_recs
    for r in attributed_recs:
        assert len(r["input_relevance"]) == len(r["tokens"]) == len(r["token_ids"])
        assert r["target"]["id"] != r["contrast"]["id"]
        assert r["delta"] == pytest.approx(r["target"]["logit"] - r["contrast"]["logit"], abs=1e-4)
        assert len(r["topk"]) == 3
        names, nodes = mc.node_relevance(r)
        assert names[0] == "embed" and nodes.shape == (len(names), len(r["tokens"]))
        # the embedding node is the input relevance
        assert nodes[0].tolist() == pytest.approx(r["input_relevance"], abs=1e-5)
        assert "query" in r["segments"]
    gen = run["tiny_gen"].attributed
    assert gen and all(r["kind"] == "generate_until" and r["gold"] for r in gen)
    for r in attributed_recs:  # where the time went
        assert r["timings"]["forward"] > 0 and r["timings"]["backward"] > 0
        assert r["seconds"] >= r["timings"]["forward"] + r["timings"]["backward"]
    summary = run.results["lrp"]["tasks"]["tiny_mc"]
    assert summary["seconds"]["records"] >= summary["seconds"]["forward"] + summary["seconds"]["backward"] > 0
    assert summary["seconds"]["writing"] > 0
    assert summary["failures"] == len(mc.records)
    assert summary["attributed"] == len(attributed_recs)
    assert summary["clean_case_rate"] == pytest.approx(len(attributed_recs) / len(mc.records))


def test_generate_until_records_equal_a_fresh_explanation(world, attributed):
    """generate_until records explain a token located by the task's locator chain; the record must equal a separate
    explain() of its tokens, and the target must be the model's greedy token there. When the token is in the model's
    own output, the explained ids are the prompt the model generated from + its output up to that token."""
    import torch
    from transformers import AutoModelForCausalLM

    from lm_eval_lrp.lrp import explain

    model = AutoModelForCausalLM.from_pretrained(world["model"], dtype=torch.float32).eval()
    recs = [r for r in th.records(attributed[0], "tiny_gen") if r["status"] == "attributed"]
    assert recs
    for r in recs:
        ids = torch.tensor(r["token_ids"])
        with torch.no_grad():
            assert int(model(ids.unsqueeze(0)).logits[0, -1].argmax()) == r["target"]["id"]
        e = explain(model, ids, r["position"], r["target"]["id"], r["contrast"]["id"], topk=3)
        assert r["delta"] == pytest.approx(e.delta, abs=1e-4)
        loc = r["locate"]
        assert loc["chain"] == ["verifier", "rollout", "gold"] and r["locator"] == loc["locator"] in loc["chain"]
        assert [a["locator"] for a in loc["attempts"]][-1] == r["locator"]
        assert loc["output_tokens"] == "generated"  # the tokens lm-eval's generation produced, not a re-encoding
        if loc["explains"] == "output":
            prompt = r["token_ids"][: r["n_prompt_tokens"]]
            own = r["token_ids"][r["n_prompt_tokens"]:] + [r["target"]["id"]]
            with torch.no_grad():
                greedy = model.generate(torch.tensor([prompt]), max_new_tokens=len(own), do_sample=False,
                                        pad_token_id=0)[0, len(prompt):].tolist()
            assert greedy == own and r["output_offset"] is not None
        elif r["output_offset"] is not None:  # gold: known only where the explained token is the output's own
            assert r["model_output"][r["output_offset"]:].startswith(r["target"]["token"])
        assert r["input_relevance"] == pytest.approx(e.input_relevance.tolist(), abs=1e-4, rel=1e-3)


def test_options_reach_the_wrapper(attributed):
    cfg = th.results_json(attributed[0])["config"]
    assert cfg["model"] == "hf-lrp"
    assert cfg["lrp"]["min_delta"] == 0.0 and cfg["lrp"]["topk"] == 3 and cfg["lrp"]["rule"] == "attnlrp"


def test_without_log_samples_no_samples_are_written(world):
    out = world["root"] / "nosamples"
    proc = th.run_cli(_args(world, out, tasks="tiny_mc", extra=["--lrp", "--lrp_rule", "cp", "--lrp_nodes", "false"]),
                      world["root"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    sub = th.model_dir(out)
    assert not list(sub.glob("samples_*.jsonl"))
    res = th.results_json(out)
    assert "samples" not in res and res["task_hashes"] == {}
    recs = [json.loads(x) for f in sub.glob("attributions_tiny_mc_*.jsonl") for x in f.read_text().splitlines()]
    assert recs and all(r.get("rule", "cp") == "cp" for r in recs)
    assert not list(sub.glob("*.nodes"))
    # CP-LRP is conservative on this bias-free model
    for r in recs:
        if r["status"] == "attributed":
            assert r["conservation"]["ratio"] == pytest.approx(1.0, abs=1e-3)


def test_weak_preferences_are_skipped_with_reason(world):
    out = world["root"] / "strict"
    proc = th.run_cli(_args(world, out, tasks="tiny_mc", extra=["--lrp", "--lrp_min_delta", "1000"]), world["root"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [json.loads(x) for f in th.model_dir(out).glob("attributions_*.jsonl") for x in f.read_text().splitlines()]
    assert recs and all(r["status"] == "skipped" and r["weak"] and r["input_relevance"] for r in recs)
    for r in recs:  # a weak preference, or a first differing token that already favours the gold
        assert ("weak preference" in r["reason"]) == (r["delta"] >= 0), r["reason"]
    assert th.results_json(out)["lrp"]["tasks"]["tiny_mc"]["clean_case_rate"] == 0.0


def test_task_without_gold_and_long_context(world):
    out = world["root"] / "nogold"
    proc = th.run_cli(_args(world, out, tasks="tiny_nogold,tiny_mc",
                            extra=["--lrp", "--lrp_min_delta", "0", "--lrp_max_length", "6"]), world["root"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = th.results_json(out)
    assert "tiny_nogold" in res["results"]
    recs = {t: [json.loads(x) for f in th.model_dir(out).glob(f"attributions_{t}_*.jsonl") for x in f.read_text().splitlines()]
            for t in ("tiny_nogold", "tiny_mc")}
    assert recs["tiny_nogold"] and all(r["status"] == "skipped" and "no gold" in r["reason"] for r in recs["tiny_nogold"])
    att = [r for r in recs["tiny_mc"] if r["status"] == "attributed"]
    assert att and all(len(r["token_ids"]) <= 6 and r["truncated_tokens"] > 0 for r in att)


def test_a_reference_model_joins_the_default_chain(world):
    """--lrp_reference_model (same tokenizer, its own gap) is loaded once and used by the default chain without
    --lrp_locate; an unknown argument of it is named before anything is evaluated."""
    ref = th.build(world["root"], layers=3)  # other random weights, the same tokenizer
    out = world["root"] / "reference"
    proc = th.run_cli(_args(world, out, tasks="tiny_gen", extra=[
        "--log_samples", "--lrp", "--lrp_min_delta", "0", "--lrp_rollouts", "0",
        "--lrp_reference_model", f"pretrained={ref},gap=0.5"]), world["root"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = th.records(out, "tiny_gen")
    assert recs and all(r["locate"]["chain"] == ["verifier", "reference", "rollout", "gold"] for r in recs)
    by_ref = [r for r in recs if r["locate"].get("locator") == "reference"]
    assert by_ref and all("reference model (reading the gold solution first)" in r["locate"]["reason"]
                          and "nats below its choice" in r["locate"]["reason"] for r in by_ref)
    bad = th.run_cli(_args(world, world["root"] / "badref", tasks="tiny_gen", extra=[
        "--lrp", "--lrp_reference_model", f"pretrained={ref},gpa=0.5"]), world["root"])
    assert bad.returncode != 0 and "unknown argument 'gpa'" in bad.stderr and "gold_in_context" in bad.stderr
    assert not (world["root"] / "badref").exists()


def test_unsupported_architecture_still_evaluates(world):
    model = th.build(world["root"], arch="falcon")
    out = world["root"] / "falcon"
    args = _args(world, out, tasks="tiny_mc", extra=["--lrp"])
    args[3] = f"pretrained={model}"
    proc = th.run_cli(args, world["root"])
    assert proc.returncode == 3, proc.stderr[-3000:]  # evaluated, but nothing could be attributed: said in the exit status
    assert "not defined for model_type='falcon'" in proc.stderr
    assert "attribution failed" in proc.stderr and "exit status 3" in proc.stderr.strip().splitlines()[-1]
    res = th.results_json(out)
    assert res["results"]["tiny_mc"]["acc,none"] is not None
    assert "falcon" in res["lrp"]["error"] and "lrp/arch" in res["lrp"]["error"]


def test_nan_logits_are_flagged_not_written_as_numbers(world):
    """A model whose logits are NaN fails the self-check on load: evaluated as usual, nothing attributed, said so."""
    model = th.build(world["root"], nan=True)
    out = world["root"] / "nan"
    args = _args(world, out, tasks="tiny_mc", extra=["--lrp", "--lrp_min_delta", "0"])
    args[3] = f"pretrained={model}"
    proc = th.run_cli(args, world["root"])
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert not list(th.model_dir(out).glob("attributions_*.jsonl"))
    res = th.results_json(out)
    assert "acc,none" in res["results"]["tiny_mc"]  # the evaluation's results are kept
    assert "self-check failed" in res["lrp"]["error"] and "not finite" in res["lrp"]["error"]
    assert res["lrp"]["self_check"]["passed"] is False
    assert "self-check failed" in proc.stderr

def test_unknown_lrp_option_is_a_clear_error(world):
    proc = th.run_cli(_args(world, world["root"] / "x", extra=["--lrp", "--lrp_colour", "red"]), world["root"])
    assert proc.returncode != 0
    assert "unknown option --lrp_colour" in proc.stderr and "--lrp_rule" in proc.stderr


def test_help_documents_the_added_options(world):
    proc = th.run_cli(["--help"], world["root"])
    assert proc.returncode == 0
    assert "--lrp_rule" in proc.stdout and "--model_args" in proc.stdout


def test_python_api_simple_evaluate(world):
    import lm_eval

    import lm_eval_lrp

    lm_eval_lrp.install()

    res = lm_eval.simple_evaluate(model="hf-lrp", model_args={"pretrained": str(world["model"]), "lrp_min_delta": 0.0},
                                  tasks=["tiny_mc"], device="cpu", log_samples=False,
                                  task_manager=lm_eval.tasks.TaskManager(include_path=str(world["tasks"])))
    assert "samples" not in res
    assert res["lrp"]["tasks"]["tiny_mc"]["failures"] >= 1


def test_graph_and_faithfulness_in_a_run(world):
    from lm_eval_lrp.graph import load_graph

    out = world["root"] / "graphs"
    proc = th.run_cli(_args(world, out, tasks="tiny_mc", extra=["--lrp", "--lrp_min_delta", "0", "--lrp_graph", "2",
                                                                "--lrp_faithfulness"]), world["root"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    sub = th.model_dir(out)
    graphs = sorted(sub.glob("graph_tiny_mc_*.json"))
    recs = [r for r in th.records(out, "tiny_mc") if r["status"] == "attributed"]
    top2 = sorted(recs, key=lambda r: -r["delta"])[:2]
    assert {p.name for p in graphs} == {f"graph_tiny_mc_{r['doc_id']}.json" for r in top2}
    for path in graphs:  # each file is the graph of its record: the same tokens, target and Δℓ
        g = load_graph(path)
        (rec,) = [r for r in top2 if path.name == f"graph_tiny_mc_{r['doc_id']}.json"]
        assert g.meta["record"] == {"task": "tiny_mc", "doc_id": rec["doc_id"]} and g.tokens == rec["tokens"]
        assert g.meta["delta"] == pytest.approx(rec["delta"], abs=1e-4)
        assert g.final_node == f"{g.layers[-1]}@{rec['position']}"
        assert g.relevance_of(g.final_node) == pytest.approx(rec["delta"], rel=1e-3)  # all of Δℓ at the last node
        assert g.n_edges > 0 and bool((g.edge_target == g.final_key).any())  # something feeds the final node
        assert "fallbacks" not in g.meta  # the usual path, nothing replaced
    for r in recs:
        f = r["faithfulness"]
        assert f["curves"]["attnlrp"][0] == pytest.approx(r["delta"], abs=1e-4)
        assert set(f["curves"]) >= {"attnlrp", "grad_x_input", "cp", "random"}
    summary = th.results_json(out)["lrp"]["tasks"]["tiny_mc"]
    assert summary["graphs"] == 2 and summary["faithfulness"]["n"] == len(recs)
