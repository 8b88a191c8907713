"""Faults and bad input: a crash or a bad argument never costs the user the evaluation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import tiny_harness as th


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    return {"root": root, "model": th.build(root), "tasks": th.write_extra_tasks(root)}


def _args(world, out, tasks, *extra, model=None):
    return ["--model", "hf", "--model_args", f"pretrained={model or world['model']}", "--include_path",
            str(world["tasks"]), "--tasks", tasks, "--device", "cpu", "--output_path", str(out), *extra]


def _key(r):
    return (r["doc_id"], r["status"], r.get("target", {}).get("id"), r.get("contrast", {}).get("id"),
            round(r.get("delta", 0.0), 4))


def test_sigkill_then_resume_equals_uninterrupted_run(world):
    model = th.build(world["root"], layers=6, hidden=256)  # slow enough to be killed mid-way
    args = lambda out: _args(world, out, "tiny_big", "--lrp", "--lrp_min_delta", "0", "--lrp_sequence", "--limit", "30",  # noqa: E731
                             model=model)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

    full = world["root"] / "uninterrupted"
    assert th.run_cli(args(full), world["root"]).returncode == 0
    expected = {_key(r) for r in th.records(full, "tiny_big")}
    assert len(expected) > 10

    out = world["root"] / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "lm_eval_lrp", *args(out)], cwd=world["root"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    lines = 0
    while time.time() < deadline and proc.poll() is None:
        files = list(out.glob("*/attributions_tiny_big_*.jsonl"))
        lines = sum(1 for f in files for _ in open(f)) if files else 0
        if lines >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-attribution"
    (partial,) = list(out.glob("*/attributions_tiny_big_*.jsonl"))
    before = th.records(out, "tiny_big")
    assert 0 < len(before) < len(expected)
    assert all(r["status"] in ("attributed", "skipped") and "doc_id" in r for r in before)  # complete records
    with open(partial, "a") as fh:  # a write torn by the kill
        fh.write('{"task": "tiny_big", "doc_id": 99')

    proc = th.run_cli(args(out), world["root"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming" in proc.stderr
    assert f"{partial}:" in proc.stderr.replace("\n", "") and "not an attribution record" in proc.stderr  # the torn line is named
    after = th.records(out, "tiny_big")
    assert {_key(r) for r in after} == expected
    assert len(after) == len(expected)  # nothing redone twice
    kept = {r["doc_id"]: r["seconds"] for r in before if "seconds" in r}
    again = {r["doc_id"]: r.get("seconds") for r in after}
    assert all(again[d] == s for d, s in kept.items())  # documents already attributed were not redone


def test_out_of_memory_in_one_attribution(world, monkeypatch):
    """Simulated OOM on one document: that record says so with advice; the rest go on; results unchanged."""
    import lm_eval
    import torch

    import lm_eval_lrp
    import lm_eval_lrp.harness.attribute as harness

    lm_eval_lrp.install()

    def run(out=None):
        extra = {"lrp_output_path": str(out)} if out is not None else {}
        return lm_eval.simple_evaluate(model="hf-lrp", model_args={"pretrained": str(world["model"]), "lrp_min_delta": 0.0,
                                                                   **extra},
                                       tasks=["tiny_mc"], device="cpu", log_samples=True,
                                       task_manager=lm_eval.tasks.TaskManager(include_path=str(world["tasks"])))

    plain = run()
    real = harness.explain
    victim = min(r["doc_id"] for r in plain["samples"]["tiny_mc"] if r["acc"] < 1)  # failures are explained in doc order
    calls = {"n": 0}

    def flaky(model, ids, *a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("simulated: CPU ran out of memory")
        return real(model, ids, *a, **k)

    monkeypatch.setattr(harness, "explain", flaky)
    out = world["root"] / "oom"
    res = run(out)
    assert res["results"] == plain["results"]
    s = res["lrp"]["tasks"]["tiny_mc"]
    assert s["errors"] == {"out of memory": 1}
    assert s["attributed"] == s["failures"] - 1
    recs = {r["doc_id"]: r for r in th.records(out, "tiny_mc")}
    assert recs[victim]["status"] == "error" and recs[victim]["reason"] == "out of memory"
    assert recs[victim]["advice"] == harness.OOM_ADVICE and "lrp_max_length" in recs[victim]["advice"]  # the advice
    assert all(r["status"] == "attributed" for d, r in recs.items() if d != victim)
    assert res["lrp"]["problems"] == []  # 1 error of several: below half, the run succeeds


def _ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_rolling_task_and_use_cache(world):
    out = world["root"] / "rolling"
    proc = _ok(th.run_cli(_args(world, out, "tiny_rolling,tiny_mc", "--lrp", "--lrp_min_delta", "0",
                                "--use_cache", str(world["root"] / "cache")), world["root"]))
    assert "loglikelihood_rolling (perplexity) has no right or wrong answers" in proc.stderr.replace("\n", " ")
    res = th.results_json(out)
    assert "tiny_rolling" in res["results"] and res["lrp"]["tasks"]["tiny_mc"]["failures"] > 0
    # a second run answered from lm-eval's cache attributes the same failures
    out2 = world["root"] / "rolling2"
    _ok(th.run_cli(_args(world, out2, "tiny_mc", "--lrp", "--lrp_min_delta", "0", "--use_cache",
                         str(world["root"] / "cache")), world["root"]))
    assert {_key(r) for r in th.records(out2, "tiny_mc")} == {_key(r) for r in th.records(out, "tiny_mc")}


def test_predict_only(world):
    out = world["root"] / "predict"
    proc = _ok(th.run_cli(_args(world, out, "tiny_mc", "--lrp", "--predict_only", "--log_samples"), world["root"]))
    assert "no metrics were computed (--predict_only?)" in proc.stderr.replace("\n", " ")
    assert th.samples(out, "tiny_mc")  # lm-eval's predictions are all there


@pytest.mark.parametrize("tasks,extra,expect", [
    ("tiny_empty", [], "is its data file empty"),
    ("tiny_mc", ["--limit", "0"], "empty dataset, or --limit 0"),
])
def test_nothing_to_evaluate_is_a_clear_error(world, tasks, extra, expect):
    proc = th.run_cli(_args(world, world["root"] / f"none_{tasks}", tasks, "--lrp", *extra), world["root"])
    assert proc.returncode == 1  # as plain lm_eval: there are no results to keep
    assert "the evaluation stopped before it produced results" in proc.stderr and expect in proc.stderr


def test_unwritable_output_path(world):
    """An output path under a file is refused before anything is evaluated (exit 2, one line naming the fix); a write
    that fails during the run is exit 3 (tests/test_fail_loudly.py)."""
    blocker = world["root"] / "a_file"
    blocker.write_text("")
    proc = th.run_cli(_args(world, blocker / "out", "tiny_mc", "--lrp"), world["root"])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"{blocker} is a file, not a folder" in proc.stderr.replace("\n", " ")
    assert "|tiny_mc|" not in proc.stdout.replace(" ", "")  # refused before evaluating: nothing was run


def test_bf16_model_on_cpu(world):
    out = world["root"] / "bf16"
    args = _args(world, out, "tiny_mc", "--lrp", "--lrp_min_delta", "0")
    args[3] += ",dtype=bfloat16"
    _ok(th.run_cli(args, world["root"]))
    recs = [r for r in th.records(out, "tiny_mc") if r["status"] == "attributed"]
    assert recs
    import torch
    import transformers

    from lm_eval_lrp.lrp import explain

    fp32 = transformers.AutoModelForCausalLM.from_pretrained(world["model"], dtype=torch.float32).eval()
    for r in recs:
        c = r["conservation"]
        lost = sum(b["lost"] for b in c["blocks"]) + c["head_lost"]
        assert c["sum_input"] + lost == pytest.approx(r["delta"], abs=0.01)  # the books close in bf16 too
        ref = explain(fp32, r["token_ids"], r["position"], r["target"]["id"], r["contrast"]["id"])
        assert r["delta"] == pytest.approx(ref.delta, rel=0.03, abs=0.01)  # bf16 explains what fp32 explains
        assert c["sum_input"] == pytest.approx(float(ref.input_relevance.sum()), rel=0.05, abs=0.01)


def _ctrl_c_as_in_a_terminal():
    """The child gets Ctrl-C as a user's terminal delivers it, even when this suite runs as a background job (a shell
    without job control starts those with SIGINT ignored, and the child would inherit that and finish the run)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_attribution_says_what_was_kept_and_how_to_resume(world):
    model = th.build(world["root"], layers=6, hidden=256)
    out, log = world["root"] / "interrupted", world["root"] / "interrupted.log"  # stderr to a file: no pipe to fill
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lm_eval_lrp",
                             *_args(world, out, "tiny_big", "--lrp", "--lrp_min_delta", "0", model=model)],
                            cwd=world["root"], env=env, stdout=subprocess.DEVNULL, stderr=(err := log.open("w")), text=True,
                            preexec_fn=_ctrl_c_as_in_a_terminal)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        files = list(out.glob("*/attributions_tiny_big_*.jsonl"))
        if files and sum(1 for f in files for _ in open(f)) >= 1:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    proc.wait(timeout=300)
    err.close()
    stderr = log.read_text()
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "rerun the same command" in stderr and "attributions_tiny_big_" in stderr
    assert "Traceback" not in stderr


def test_records_of_an_older_locator_chain_are_redone_not_resumed(monkeypatch):
    """A record depends on the default locator chains and the record format: when an upgrade changes them, an
    earlier run's records in the same folder no longer carry this run's fingerprint and are attributed again."""
    from lm_eval_lrp.config import LRPConfig
    from lm_eval_lrp.harness import resume
    from lm_eval_lrp.locate import chain

    cfg, source = LRPConfig(), {"model": {"pretrained": "m"}}
    before = resume.fingerprint(cfg, source)
    assert resume.fingerprint(LRPConfig(), dict(source)) == before  # stable for the same command
    monkeypatch.setitem(chain.DEFAULT_CHAINS, "math", ("arithmetic", "rollout", "gold"))
    assert resume.fingerprint(cfg, source) != before
    monkeypatch.undo()
    assert resume.fingerprint(cfg, source) == before
    assert resume.fingerprint(LRPConfig(locate="gold"), source) != before
