"""The report a newcomer reads (issue #26): the explained token marked exactly, white space and special tokens
visible, weak records shown with their relevance (marked weak, out of the statistics), filterable in the index."""

from __future__ import annotations

import json
import re

from test_report import attributed, report_text, results_for, write_run

from lm_eval_lrp.report import build_report
from lm_eval_lrp.report.where import highlight, step_span, visible

OUTPUT = "She sells 16 - 3 = 13 eggs.\n13 * 3 = 42.\nThe number of muffins is 42.\n#### 42"


def _marked(html: str) -> str:
    (inner,) = re.findall(r'<mark class="tok">(.*?)</mark>', html, re.S)
    return inner


def _step(html: str) -> str:
    (inner,) = re.findall(r'<span class="step">(.*?)</span>', html, re.S)
    return re.sub(r"<[^>]+>", "", inner)


def test_the_mark_is_the_explained_token_and_its_step_is_lighter():
    offset = OUTPUT.index("3 = 42")
    html = str(highlight(OUTPUT, offset, "3"))
    assert _marked(html) == "3"  # not a fixed 24 characters across the line break
    assert _step(html) == "13 * 3 = 42."
    assert re.sub(r"<[^>]+>", "", html) == OUTPUT  # every other character is the output itself
    # a token with its leading space: the space is part of the token's own characters
    offset = OUTPUT.index(" muffins")
    assert _marked(str(highlight(OUTPUT, offset, " muffins"))) == " muffins"


def test_white_space_and_special_tokens_are_visible():
    offset = OUTPUT.index("\n13")
    html = str(highlight(OUTPUT, offset, "\n"))
    assert _marked(html) == "⏎\n"  # visible, and the line still breaks
    html = str(highlight(OUTPUT, len(OUTPUT), "<|im_end|>", special=True))
    assert _marked(html) == "&lt;|im_end|&gt;" and html.endswith('<mark class="tok">&lt;|im_end|&gt;</mark></span>')
    assert visible("\n") == "⏎" and visible(" ") == "␣" and visible("") == "∅" and visible("\n\n") == "⏎⏎"
    assert visible(" 42") == " 42"


def test_the_step_is_the_sentence_within_a_line():
    text = "First we add. Then 3 + 4 = 8. Done"
    start = text.index("8")
    a, b = step_span(text, start, start + 1)
    assert text[a:b] == "Then 3 + 4 = 8."


def _weak(doc_id: int, delta: float, output: str, offset: int, token: str) -> dict:
    toks = ["<|im_start|>", "Q", ":", " 2", "+", "2", "\n", "A", ":"]
    rel = [3.0, 0.1, -0.2, 0.5, 0.05, -0.3, 0.0, 0.2, 0.4]
    r = attributed("tiny_gen", doc_id, toks, rel, delta=delta, output=output)
    r.update(status="skipped", weak=True, reason="weak preference (delta <= 1)",
             target={"id": 1, "token": token, "logit": 1.0}, contrast={"id": 2, "token": " 4", "logit": 0.6},
             locate={"locator": "trajectory", "output_offset": offset, "chain": ["trajectory"]})
    return r


def test_weak_records_show_their_relevance_marked_weak_and_stay_out_of_the_statistics(tmp_path):
    toks = ["<|im_start|>", "Q", ":", " 1", "+", "2", "\n", "A", ":"]
    clean = attributed("tiny_gen", 0, toks, [3.0, 0.1, -0.2, 0.5, 0.05, -0.3, 0.0, 0.2, 0.4], delta=2.0)
    weak = _weak(1, 0.4, " 5\n", 0, " 5")
    eos = _weak(2, 0.2, " 5", 2, "<|im_end|>")
    summary = {"tiny_gen": {"accuracy": 0.0, "acc": 0.0, "failures": 3, "attributed": 1,
                            "skipped": {"weak preference (delta <= 1)": 2}, "errors": {}, "clean_case_rate": 1 / 3,
                            "median_delta": 2.0, "median_conservation_ratio": 0.9, "top_wrong_tokens": []}}
    run = write_run(tmp_path / "run" / "model", {"tiny_gen": [clean, weak, eos]}, results_for(summary))
    index, builder, summaries = build_report(run)
    html = report_text(index)
    (s,) = summaries
    assert s.attributed == 1 and s.deltas == [2.0]  # the weak ones are not in the clean-case statistics
    assert html.count("<h3>Input relevance") == 3  # the weak records' relevance is shown ...
    assert html.count('<h3>Input relevance <span class="badge weak">weak</span>') == 2  # ... marked weak
    assert "kept out of the clean-case statistics" in html
    assert '<mark class="tok"> 5</mark>' in html and '<mark class="tok">&lt;|im_end|&gt;</mark>' in html
    rows = json.loads(re.search(r'<script type="application/json" id="rows">(.*?)</script>', index.read_text(), re.S)
                      .group(1))
    status = [rows["dicts"]["status"][row[2]] for row in rows["rows"]]
    assert status == ["attributed", "weak", "weak"]  # the index's status filter can select the weak ones


def test_a_step_starts_at_its_first_visible_character():
    text = "Eggs: 16.\n The number is 16 x 3 = 42."
    start = text.index("3 =")
    a, b = step_span(text, start, start + 1)
    assert text[a:b] == "The number is 16 x 3 = 42."
