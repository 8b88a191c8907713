"""Record fields a newcomer reads (issue #26): where the explained token starts, special tokens by name, and a
record's ``seconds`` that covers its own ``timings``."""

from __future__ import annotations

import pytest

import tiny_harness as th
from lm_eval_lrp.locate import Context, Generation
from lm_eval_lrp.locate.verifier import InstructionVerifier

WORDS = ["the", " answer", " is", " Hello", ".", "<|im_end|>"]


class WordTokenizer:
    """Multi-character tokens (a leading space belongs to its word), one special token: id 5."""

    eos_token_id = 5

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return "".join("" if (i == 5 and skip_special_tokens) else WORDS[i] for i in ids)

    def __call__(self, text, add_special_tokens=False):
        raise NotImplementedError


def test_an_instruction_violation_inside_a_token_points_at_the_token_start():
    output = "the answer is Hello."
    gen = Generation([0], [0, 1, 2, 3, 4], output,
                     doc={"instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]})
    loc = InstructionVerifier().locate(gen, Context.from_tokenizer(WordTokenizer()))
    assert loc.index == 3 and "uppercase 'H'" in loc.reason
    assert loc.output_offset == output.index(" Hello")  # the token's first character, not the violation's
    assert output.startswith(WORDS[loc.index], loc.output_offset)


def test_a_special_token_is_named_not_empty():
    ctx = Context.from_tokenizer(WordTokenizer())
    assert ctx.decode([1, 5]) == " answer"  # text as the task sees it
    assert ctx.token(5) == "<|im_end|>" and ctx.token(3) == " Hello"  # a forced token as the record stores it


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fields")
    return {"root": root, "model": th.build(root), "tasks": th.write_tasks(root)}


@pytest.mark.slow  # one tiny lm-eval run (lm-eval's task index dominates on a loaded machine)
def test_seconds_cover_the_timings_under_batch_auto(world):
    import lm_eval

    import lm_eval_lrp

    lm_eval_lrp.install()
    out = world["root"] / "auto"
    lm_eval.simple_evaluate(model="hf-lrp", model_args={"pretrained": str(world["model"]), "lrp_batch_size": "auto",
                                                        "lrp_min_delta": -100.0, "lrp_output_path": str(out)},
                            tasks=["tiny_mc"], device="cpu", log_samples=True,
                            task_manager=lm_eval.tasks.TaskManager(include_path=str(world["tasks"])))
    records = [r for r in th.records(out, "tiny_mc") if r["status"] == "attributed"]
    assert len(records) >= 2
    for r in records:
        assert r["seconds"] >= sum(r["timings"].values()) - 1e-3, (r["seconds"], r["timings"])


def _task(tmp_path, **config):
    import json

    from lm_eval.api.task import ConfigurableTask

    data = tmp_path / "docs.jsonl"
    data.write_text(json.dumps({"prompt": "Write in lowercase.", "answer": 7}) + "\n")
    base = {"task": "tiny_if", "dataset_path": "json", "dataset_kwargs": {"data_files": {"train": str(data)}},
            "test_split": "train", "output_type": "generate_until", "doc_to_text": "prompt", "doc_to_target": 0,
            "generation_kwargs": {"until": [], "max_gen_toks": 4}}
    return ConfigurableTask(config={**base, **config})


def test_a_task_without_gold_or_choices_gives_no_gold_and_logs_no_error(tmp_path, caplog):
    """ifeval's shape: ``doc_to_target: 0`` and no choices; lm-eval logs an ERROR when asked for its choices."""
    import logging

    from lm_eval_lrp.lmeval.tasks import task_view
    from task_hooks import HookRegistry

    view = task_view("tiny_if", _task(tmp_path))
    doc = {"prompt": "Write in lowercase.", "answer": 7}
    hook = HookRegistry().for_task("tiny_if", "generate_until")
    with caplog.at_level(logging.INFO):
        assert view.doc_to_choice(doc) is None
        assert hook.gold_continuation(view, doc, {"target": 0, "doc": doc}) is None  # not "Gold 0"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    # an integer answer read from the doc is a gold (the int is the answer itself)
    answered = task_view("tiny_int", _task(tmp_path, task="tiny_int", doc_to_target="answer"))
    assert hook.gold_continuation(answered, doc, {"target": 7, "doc": doc}) == " 7"


def test_the_summary_in_a_log_keeps_task_names_whole():
    """Output to a log file (not a terminal, 80 columns by default): names are never folded mid-word."""
    import io

    from rich.console import Console

    from lm_eval_lrp.console import print_summary

    task = {"metric": "prompt_level_strict_acc", "accuracy": 0.25, "failures": 18, "attributed": 2,
            "skipped": {"weak": 16}, "errors": {}, "clean_case_rate": 0.11, "median_delta": 1.5,
            "median_conservation_ratio": 0.9, "top_wrong_tokens": []}
    log = io.StringIO()
    console = Console(width=60, file=log, force_terminal=False)
    print_summary({"rule": "attnlrp", "min_delta": 1.0, "tasks": {"humaneval_instruct_long_name": task}}, console)
    text = log.getvalue()
    assert "humaneval_instruct_long_name" in text and "prompt_level_strict_acc" in text, text


def test_a_writer_that_wrote_nothing_leaves_no_empty_file(tmp_path):
    from lm_eval_lrp.artifacts import AttributionWriter, read_records

    path = tmp_path / "attributions_t_2026-01-02T03-04-05.678901.jsonl"
    AttributionWriter(path).close()  # interrupted before the first record
    assert not path.exists()
    with AttributionWriter(path) as writer:
        writer.write({"task": "t", "doc_id": 0, "status": "skipped", "reason": "x"})
    assert [r.doc_id for r in read_records(path)] == [0]


@pytest.mark.slow  # one tiny lm-eval run
def test_a_length_limit_that_cuts_the_question_is_said_loudly(world):
    """``--lrp_max_length 5``: the summary, its notes (shown by the report) and the console say what was cut."""
    proc = th.run_cli(["--model", "hf", "--model_args", f"pretrained={world['model']}", "--tasks", "tiny_mc",
                       "--include_path", str(world["tasks"]), "--device", "cpu", "--limit", "3", "--lrp",
                       "--lrp_min_delta", "-100", "--lrp_max_length", "5", "--output_path", str(world["root"] / "cut")],
                      world["root"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    results = json.loads(sorted(th.model_dir(world["root"] / "cut").glob("results_*.json"))[-1].read_text())
    t = results["lrp"]["tasks"]["tiny_mc"]
    assert t["truncated"] == t["explained"] > 0
    assert any("cut from the left to fit --lrp_max_length 5" in n for n in results["lrp"]["notes"])
    assert "explained contexts were cut from the left" in proc.stderr.replace("\n", " ")


def test_errors_are_not_called_skipped_in_the_summary():
    import io

    from rich.console import Console

    from lm_eval_lrp.console import print_summary

    task = {"metric": "exact_match", "accuracy": 0.0, "failures": 3, "attributed": 0, "skipped": {"weak": 1},
            "errors": {"judge: connection refused": 2}, "clean_case_rate": 0.0, "median_delta": None,
            "median_conservation_ratio": None, "top_wrong_tokens": []}
    log = io.StringIO()
    print_summary({"rule": "attnlrp", "min_delta": 1.0, "tasks": {"gsm8k": task}}, Console(width=120, file=log))
    lines = log.getvalue().splitlines()
    assert "gsm8k skipped: 1× weak" in lines and "gsm8k errors: 2× judge: connection refused" in lines


def test_the_report_summary_in_a_log_keeps_names_whole(tmp_path):
    """``lm-eval-lrp report`` with its output in a log (the main job's last step): 'arc_easy', 'exact_match' whole."""
    import subprocess
    import sys

    from test_report import attributed, results_for, write_run

    toks = ["Q", ":", " 1", "+", "2", "\n", "A", ":"]
    rec = attributed("arc_easy", 0, toks, [0.1, -0.2, 0.5, 0.05, -0.3, 0.0, 0.2, 0.4], delta=3.1)
    summary = {"arc_easy": {"accuracy": 0.6, "acc": 0.6, "failures": 1, "attributed": 1, "skipped": {}, "errors": {},
                            "clean_case_rate": 1.0, "median_delta": 3.1, "median_conservation_ratio": 0.39,
                            "top_wrong_tokens": []}}
    run = write_run(tmp_path / "run" / "model", {"arc_easy": [rec]}, results_for(summary))
    proc = subprocess.run([sys.executable, "-m", "lm_eval_lrp", "report", str(run)], capture_output=True, text=True,
                          env={"COLUMNS": "80", "PATH": "", "PYTHONPATH": ":".join(sys.path)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "arc_easy" in proc.stdout and "exact_match" in proc.stdout, proc.stdout
