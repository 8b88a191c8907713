"""Verifier checks on plain text: wrong arithmetic, broken instructions, code that does not compile."""

from __future__ import annotations

import pytest

from lm_eval_lrp.locate.arithmetic import arithmetic_errors
from lm_eval_lrp.locate.code import syntax_error
from lm_eval_lrp.locate.instructions import violations


def first(text):
    errs = arithmetic_errors(text)
    return (errs[0].offset, errs[0].correct) if errs else None


def test_gsm8k_annotations_from_the_issue():
    text = "Each week 3 * 3 * 60 = <<3*3*60=180>>180 minutes."
    assert first(text) == (text.index("180"), "540")
    text = "Total $10*40 + $12*45 = <<10*40+12*45=420+540=960>>960"
    assert first(text) == (text.index("420"), "940")  # the first wrong side of the chain, not the (consistent) 960


def test_plain_equations_and_precision():
    assert first("2 + 2 = 5. Then 5 x 2 = 10") == (8, "4")
    assert first("so 4 - 1 = 3 = 4") == (15, "3")
    assert first("10/3 = 3.33 and 1,200 + 300 = 1,500 and $5 * 2 = $10") is None
    assert first("In 2024 she was 7 years old = young") is None  # not arithmetic
    assert first("12 / 4 = 3.5") == (9, "3")


@pytest.mark.parametrize(
    "text,ids,kwargs,offset",
    [
        ("hello there, friend", ["punctuation:no_comma"], [{}], 11),
        ("all fine Until here", ["change_case:english_lowercase"], [{}], 9),
        ("ALL CAPS bUT", ["change_case:english_capital"], [{}], 9),
        ("one two three four", ["length_constraints:number_words"], [{"num_words": 3, "relation": "less than"}], 8),
        ("a quick brown fox", ["keywords:forbidden_words"], [{"forbidden_words": ["Brown"]}], 8),
        ("Bye now.", ["startend:end_checker"], [{"end_phrase": "Is there anything else?"}], 8),
        ("Done. Is there anything else? Yes.", ["startend:end_checker"], [{"end_phrase": "Is there anything else?"}], 29),
        ("a\n* x\n* y\n* z", ["detectable_format:number_bullet_lists"], [{"num_bullets": 2}], 10),
        ('{"a": 1,}', ["detectable_format:json_format"], [{}], 8),
    ],
)
def test_instruction_violations(text, ids, kwargs, offset):
    found = violations(text, ids, kwargs)
    assert found and found[0].offset == offset, found


def test_instructions_kept_and_unlocatable_ones():
    assert violations("no commas here", ["punctuation:no_comma"], [{}]) == []
    assert violations("One. Two. Three.", ["length_constraints:number_sentences"],
                      [{"num_sentences": 1, "relation": "less than"}]) == []  # needs nltk punkt: not located
    both = violations("Hi, you", ["punctuation:no_comma", "change_case:english_lowercase"], [{}, {}])
    assert [v.instruction for v in both] == ["change_case:english_lowercase", "punctuation:no_comma"]  # earliest first
    no_comma = both[1]
    assert no_comma.accept(" and") and not no_comma.accept(",")


def test_code_first_line_that_does_not_compile():
    assert syntax_error("x = 1\ny = (2\nz = 3\n").offset == 6
    assert syntax_error("    return a + 1\n", "def f(a):\n") is None
    body = "    x = 1\n    return a +\n"
    problem = syntax_error(body, "def f(a):\n    '''doc'''\n")
    assert problem.line == 2 and problem.offset == body.index("return")
    fenced = "Here:\n```python\ndef f():\n  return 1\n   x = 2\n```\nok"
    assert syntax_error(fenced).offset == fenced.index("x = 2")
    # after a HumanEval prompt a closing fence instead of the body is the error
    assert syntax_error("```\n\nThe function takes a list.", "def f(a):\n    pass\n").offset == 0
