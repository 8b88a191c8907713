"""``coverage``: the line of a wrong (compiling, non-crashing) solution that the failing tests run and the passing
ones do not."""

from __future__ import annotations

import pytest
from conftest import tiny_model
from locate_helpers import CharTokenizer

from lm_eval_lrp.locate import Budget, Chain, Context, Generation, NotFound, make
from lm_eval_lrp.locate.coverage import humaneval_units, job_of, ochiai, suspect_line
from lm_eval_lrp.locate.types import TimedOut

TOK = CharTokenizer()

# a HumanEval-shaped task: drop every number that occurs more than once (the tests of HumanEval/26)
DEDUP = {"prompt": "def remove_duplicates(numbers):\n", "entry_point": "remove_duplicates",
         "test": "METADATA = {}\n\n\ndef check(candidate):\n    assert candidate([]) == []\n"
                 "    assert candidate([1, 2, 3, 4]) == [1, 2, 3, 4]\n"
                 "    assert candidate([1, 2, 3, 2, 4, 3, 5]) == [1, 4, 5]\n"}
# keeps the first of each number: right on the first two tests, wrong on the third
FIRST_OF_EACH = ("    seen = set()\n    result = []\n    for number in numbers:\n        if number not in seen:\n"
                 "            seen.add(number)\n            result.append(number)\n    return result")


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama")


def ctx_for(model=None, **kw):
    return Context.from_tokenizer(TOK, model, **kw)


def gen_of(output: str, doc: dict) -> Generation:
    return Generation(TOK.encode(doc.get("prompt", "Q:")), TOK.encode(output), output, doc=doc)


def test_each_assert_of_check_is_one_test_with_the_set_up_in_its_place():
    test = ("def check(candidate):\n    import math\n    assert candidate(1) == 1\n    x = math.pi\n"
            "    for i in range(3):\n        assert candidate(i) == i\n")
    units = humaneval_units(test)
    assert len(units) == 2  # the bare assert, and the loop that holds one
    ns: dict = {}
    for unit in units:
        exec(unit, ns)  # each defines the unit function; the set-up statements are in both
        assert "import math" in unit and "x = math.pi" in unit
    assert "assert candidate(1) == 1" in units[0] and "for i in range(3)" not in units[0]
    assert "for i in range(3)" in units[1] and "assert candidate(1)" not in units[1]
    assert humaneval_units("def other(c):\n    assert c\n") is None and humaneval_units("def check(:") is None
    mbpp = job_of({"test_list": ["assert f(1) == 2", "assert f(2) == 3"]}, "def f(x):\n    return x + 1\n")
    assert mbpp.units == ["assert f(1) == 2\n", "assert f(2) == 3\n"] and mbpp.entry is None
    assert job_of({"question": "2+2?"}, "4") is None


def test_ochiai_ranks_the_lines_that_only_failing_tests_run():
    runs = [(False, {1, 2, 5}), (False, {1, 2, 3, 5}), (True, {1, 2, 3, 4, 5})]
    scores = ochiai(runs)
    assert scores[4] == 1.0  # run by the failing test only
    assert scores[3] == pytest.approx(1 / 2 ** 0.5) and scores[1] == pytest.approx(1 / 3 ** 0.5)
    assert ochiai([(False, {1}), (True, {2})]) == {1: 0.0, 2: 1.0}


def test_the_earliest_best_scored_line_of_a_wrong_solution():
    found = suspect_line(DEDUP, FIRST_OF_EACH)
    assert FIRST_OF_EACH[found.offset:found.end] == "if number not in seen:"  # the loop's body: 1 fail, 1 pass
    assert (found.line, found.failing, found.passing, found.tests, found.failed, found.tied) == (4, 1, 1, 3, 1, 3)
    # MBPP: the branch that only the failing assert takes
    mbpp = {"test_list": ["assert sign(3) == 1", "assert sign(5) == 1", "assert sign(-2) == -1"]}
    code = "def sign(x):\n    if x > 0:\n        return 1\n    return 1\n"
    found = suspect_line(mbpp, code)
    assert code[found.offset:found.end] == "return 1" and found.line == 4 and found.score == 1.0


def test_nothing_is_suspect_where_the_tests_cannot_tell_lines_apart():
    with pytest.raises(NotFound, match="all 3 tests fail"):
        suspect_line(DEDUP, "    return None")
    with pytest.raises(NotFound, match="all 3 tests pass"):
        suspect_line(DEDUP, "    return [n for n in numbers if numbers.count(n) == 1]")
    with pytest.raises(NotFound, match="run the same lines"):  # straight-line code, one test passes
        suspect_line(DEDUP, "    out = list(numbers)\n    return out[:4]")
    with pytest.raises(NotFound, match="does not load"):
        suspect_line(DEDUP, "    return (")
    with pytest.raises(NotFound, match="1 test"):
        suspect_line({**DEDUP, "test": "def check(candidate):\n    assert candidate([]) == []\n"}, "    return 0")
    with pytest.raises(NotFound, match="not a HumanEval"):
        suspect_line({"question": "2+2?"}, "4")


def test_a_test_that_never_ends_is_one_failing_test():
    looping = "    if not numbers:\n        return []\n    while numbers[0] == 1:\n        pass\n    return numbers"
    found = suspect_line(DEDUP, looping, limit=0.5)  # each loop is cut after 0.5 s and counts as a failure
    assert looping[found.offset:found.end] == "while numbers[0] == 1:" and (found.failed, found.passing) == (2, 0)


def test_an_interpreter_that_does_not_finish_is_a_timeout(monkeypatch):
    from lm_eval_lrp.locate import coverage

    monkeypatch.setattr(coverage, "run_units", lambda job, limit: None)
    with pytest.raises(TimedOut):
        suspect_line(DEDUP, FIRST_OF_EACH)


def test_coverage_locator_explains_the_suspect_line(model):
    gen = gen_of(FIRST_OF_EACH, DEDUP)
    with pytest.raises(NotFound, match="no scorer"):
        make("coverage").locate(gen, ctx_for(model))
    verdicts = []
    ctx = ctx_for(model, budget=Budget(max_rollouts=2, max_new_tokens=4, width=2)).for_doc(
        lambda text: verdicts.append(text) or False)
    loc = make("coverage").locate(gen, ctx)
    line = FIRST_OF_EACH.index("if number not in seen:")
    assert line <= loc.output_offset < line + len("if number not in seen:") and loc.locator == "coverage"
    assert loc.contrast is not None and loc.contrast != loc.target
    assert "1 of the task's 3 tests fail; line 4" in loc.reason and "tied with 2 later line(s)" in loc.reason
    assert len(loc.rollouts) == 2 and len(verdicts) == 2  # its best alternatives were rolled out and judged
    assert {c.why for c in loc.candidates} == {"line 4"}
    assert Chain.default("code").names == ["code", "crash", "coverage", "rollout", "gold"]
