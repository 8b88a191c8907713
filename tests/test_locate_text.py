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
        # a near copy of the required ending as the last sentence: the first word where it departs
        ("Sure! Is there anything else I can assist with?", ["startend:end_checker"],
         [{"end_phrase": "Is there anything else I can help with?"}], 35),
        ("Yes, there are many things I can help with.", ["startend:end_checker"],
         [{"end_phrase": "Is there anything else I can help with?"}], 0),
        ("Thanks. Is there anything else I can", ["startend:end_checker"],
         [{"end_phrase": "Is there anything else I can help with?"}], 36),
        ("a\n* x\n* y\n* z", ["detectable_format:number_bullet_lists"], [{"num_bullets": 2}], 10),
        ('{"a": 1,}', ["detectable_format:json_format"], [{}], 8),
        # paragraphs set apart by blank lines only: the divider belongs where the second one starts
        ("One.\n\nTwo.\n\nThree.", ["length_constraints:number_paragraphs"], [{"num_paragraphs": 2}], 6),
        ("One only.", ["length_constraints:number_paragraphs"], [{"num_paragraphs": 2}], 9),
    ],
)
def test_instruction_violations(text, ids, kwargs, offset):
    found = violations(text, ids, kwargs)
    assert found and found[0].offset == offset, found


def test_a_misquoted_ending_wants_the_phrase_word_there():
    (v,) = violations("Sure! Is there anything else I can assist with?", ["startend:end_checker"],
                      [{"end_phrase": "Is there anything else I can help with?"}])
    assert "misquotes the required ending" in v.reason and "'assist'" in v.reason
    assert v.accept(" help") and v.accept("help") and not v.accept(" assist")
    # the same words with other punctuation: the punctuation departs
    (v,) = violations("Is there anything else I can help with.", ["startend:end_checker"],
                      [{"end_phrase": "Is there anything else I can help with?"}])
    assert v.offset == len("Is there anything else I can help with") and v.accept("?") and not v.accept(".")
    # a last sentence sharing less than half of the phrase's words is no copy: the missing ending at the end
    (v,) = violations("I like cats. I can help.", ["startend:end_checker"],
                      [{"end_phrase": "Is there anything else I can help with?"}])
    assert v.offset == len("I like cats. I can help.") and v.reason.startswith("stopped without")


def test_a_missing_divider_wants_the_divider():
    (v,) = violations("One.\n\n1. **Two**", ["length_constraints:number_paragraphs"], [{"num_paragraphs": 2}])
    assert v.accept("***") and v.accept(" **") and not v.accept("**Two") and not v.accept("1")


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


# ----------------------------------------------------------------------------- trajectory: the first step off


def step_of(output, question, solution, **doc):
    from lm_eval_lrp.locate import Generation
    from lm_eval_lrp.locate.trajectory import first_step_off

    gen = Generation([1], [5] * max(len(output), 1), output, gold=solution, doc={"question": question, **doc})
    step = first_step_off(gen)
    return None if step is None else (output[slice(*step.setup)] if step.setup else step.number, step.why)


EGGS = ("Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes muffins with four. She sells the "
        "remainder for $2 per egg. How much does she make?")
EGGS_GOLD = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18"


def test_the_setup_of_the_first_invented_value():
    step, why = step_of(" The number of eggs is 16 x 3 = 42.\nShe sells 42 x 2 = 84.\n#### 84", EGGS, EGGS_GOLD)
    assert step == "16 x 3" and "'42'" in why  # not '42' itself: the wrong step is the multiplication
    # number words of the question are given values; values the gold reaches are on the trajectory
    assert step_of(" She has 16 - 3 - 4 = 9 eggs, so 9 * 3 = 27.", EGGS, EGGS_GOLD)[0] == "9 * 3"
    # ... and a right setup whose arithmetic slips (9 * 2 = 20 where the gold reaches 18) is explained at the value
    step, why = step_of(" She has 16 - 3 - 4 = 9 eggs, so 9 * 2 = 20.", EGGS, EGGS_GOLD)
    assert step == "20" and "its own equation is wrong" in why
    # gsm8k's calculator annotation and a LaTeX equation: the chain's left side
    assert step_of(" 2*2*1 = <<2*2=4>>4 bolts", "2 bolts and half that much", "2/2=<<2/2=1>>1\n#### 3")[0] == "2*2*1"
    assert step_of(" 15 cups = 15*3 = <<35>>35.", "15 cups, 25 cups, 20 chickens", "3*20=<<3*20=60>>60")[0] == "15*3"
    latex = "so:\n\\[ 60 \\text{ meters} \\times 3 \\text{ sprints} = 180 \\text{ meters} \\]"
    assert step_of(latex, "3 sprints 3 times a week, 60 meters each", "3*3=<<3*3=9>>9\n9*60=<<9*60=540>>540")[0] == \
        "60 \\text{ meters} \\times 3 \\text{ sprints}"


def test_enumerators_restatements_and_right_answers_are_not_steps():
    plan = "1. Calculate the eggs.\n2. Step 3: sell them.\nShe sells 9 eggs for 9 * 2 = 18 dollars."
    assert step_of(plan, EGGS, EGGS_GOLD) is None  # the final answer 18 is right: nothing off the trajectory
    q, gold = "What is the smallest multiple of $5$ which is greater than $-32$?", "$-6 \\cdot 5 = \\boxed{-30}$"
    out = "The smallest multiple of $5$ greater than $-32$ is $-32$.\n\nThe answer is $-32$."
    step, why = step_of(out, q, gold)
    assert step == "-32" and "commits" in why
    assert step_of(" 5\n\n", q, gold)[0] == "5"  # a bare answer: the answer itself
    assert step_of(" three-digit numbers: 3 of them", "a three-digit integer", "\\boxed{\\frac{1}{2}}")[0] == "3"
    assert step_of("No numbers at all", q, gold) is None


def test_ranges_formulas_and_given_values_used_are_not_steps():
    """What a MATH solution writes without leaving the trajectory: counting out a range the problem names, the
    bounds of an "n-digit" range, a formula's constant; and a value the problem gives, used in an operation, is not
    yet a commitment to it as the answer (the real first error comes later: here the boxed answer)."""
    lcm = ("What is the least common multiple of the first ten positive integers?", "\\boxed{2520}")
    out = "\\[ \\text{GCD}(1, 2, 3, 4, 5, 6, 7, 8, 9, 10) = 1 \\]\nSo the LCM is 10 \\times 36 = 360."
    assert step_of(out, *lcm)[0] == "36"  # not 6: 1..10 counts out "the first ten"
    digits = ("The positive three-digit integer $N$ has a ones digit of $0$.", "\\boxed{\\frac{1}{2}}")
    assert step_of("N ranges from 100 to 999, so 45 of them.", *digits)[0] == "45"
    fan = ("A fan with a diameter of 6 feet turns 20 times a minute.", "3 * 2 = 6 \\pi\n\\boxed{162}")
    assert step_of("\\[ C = 2\\pi r \\]\nso \\[ C = 2\\pi \\times 3 = 6\\pi \\]\nthen 7 minutes", *fan)[0] == "7"
    q, gold = "What is the smallest multiple of $5$ which is greater than $-32$?", "$-6 \\cdot 5 = \\boxed{-30}$"
    out = "We divide -32 by 5 and round up.\nThe smallest multiple is \\(\\boxed{-32}\\)."
    from lm_eval_lrp.locate import Generation
    from lm_eval_lrp.locate.trajectory import first_step_off

    step = first_step_off(Generation([1], [5], out, gold=gold, doc={"question": q}))
    assert step.number == "-32" and step.offset == out.rindex("-32") and "commits" in step.why


def _lead_in_of(output, question, solution):
    from lm_eval_lrp.locate import Generation
    from lm_eval_lrp.locate.trajectory import first_step_off

    step = first_step_off(Generation([1], [5] * len(output), output, gold=solution, doc={"question": question}))
    return None if step is None or step.lead_in is None else output[slice(*step.lead_in)]


SPRINTS = ("James runs 3 sprints 3 times a week. He runs 60 meters each sprint. How many meters does he run a week?",
           "He sprints 3*3=<<3*3=9>>9 times\nSo he runs 9*60=<<9*60=540>>540 meters\n#### 540")


def test_the_sentence_that_states_the_operation_belongs_to_the_step():
    """A model that reasons in prose decides the operation in the sentence before the equation (the misread "3
    sprints in a week" is there, not in ``60 \\times 3``): that sentence joins the step when it names an operation."""
    said = "Since he runs 3 sprints in a week, we multiply the distance of one sprint by the number of sprints"
    display = f"First, one sprint is 60 meters. {said}:\n\\[\n60 \\times 3 = 180\n\\]\nSo 180 meters."
    assert _lead_in_of(display, *SPRINTS) == said
    assert _lead_in_of(f"{said}: 60 \\times 3 = 180 meters.", *SPRINTS) == said  # on the equation's own line
    labelled = f"{said}:\n   \\[\n   \\text{{Total}} = 60 \\times 3 = 180\n   \\]"  # a quantity's name is not prose
    assert _lead_in_of(labelled, *SPRINTS) == said
    # a sentence that names no operation, or no sentence introducing a display, adds nothing to the step
    assert _lead_in_of("The distance he runs in a week is:\n\\[ 60 \\times 3 = 180 \\]", *SPRINTS) is None
    assert _lead_in_of("We multiply the distances.\n\n\\[ 60 \\times 3 = 180 \\]", *SPRINTS) is None
    assert _lead_in_of("He runs 60 \\times 3 = 180 meters.", *SPRINTS) is None
    # the setup stays the equation's left side; the step is the sentence, then the setup
    from lm_eval_lrp.locate import Generation
    from lm_eval_lrp.locate.trajectory import first_step_off

    step = first_step_off(Generation([1], [5] * len(display), display, gold=SPRINTS[1], doc={"question": SPRINTS[0]}))
    assert [display[a:b] for a, b in step.spans] == [said, "60 \\times 3"]


def _plan_of(output, question, solution):
    from lm_eval_lrp.locate import Generation
    from lm_eval_lrp.locate.trajectory import first_step_off

    step = first_step_off(Generation([1], [5] * len(output), output, gold=solution, doc={"question": question}))
    return step, (None if step is None or step.plan is None else output[slice(*step.plan)])


BOOK = ("The discounted price of a book is $19.50 after a 25% discount. What was the original price?",
        "The price paid is 100 - 25 = <<100-25=75>>75 percent of the original.\n19.50 / 0.75 = <<19.50/0.75=26>>26\n#### 26")


def test_the_plan_that_names_the_operation_belongs_to_the_step():
    """A model that plans in prose before computing ("2. Subtract the discount from the original price") decided the
    operation in the plan; the equation ``19.50 - 25`` only carries it out. Without a sentence stating the operation
    next to the equation, the first plan sentence naming the setup's operation joins the step."""
    planned = "Subtract the discount from the original price to find the original price"
    out = (f"We need to follow these steps:\n\n1. Identify the discounted price of the book.\n2. {planned}.\n\n"
           "Let's calculate the original price:\n\\[ 19.50 - 25 = -5.50 \\]\nThe answer is -5.50.")
    step, plan = _plan_of(out, *BOOK)
    assert plan == planned
    assert [out[a:b] for a, b in step.spans] == [planned, "19.50 - 25"]
    # the plan must name the setup's own operation: a plan to divide does not join a subtraction
    other = out.replace(planned, "Divide the discounted price by the share that was paid")
    step, plan = _plan_of(other, *BOOK)
    assert plan is None and [other[a:b] for a, b in step.spans] == ["19.50 - 25"]
    # a sentence with a number is a computation, not the plan; prose after the first equation is not the plan
    assert _plan_of(out.replace(planned, "Subtract 25 from the price"), *BOOK)[1] is None
    late = "We get:\n\\[ 100 - 25 = 75 \\]\nThen we subtract the discount from the price.\n\\[ 19.50 - 25 = -5.50 \\]"
    assert _plan_of(late, *BOOK)[1] is None
    # a sentence that states the operation next to the equation wins over the plan (it is the nearer statement)
    said = "Now we subtract the discount from the discounted price"
    step, plan = _plan_of(out.replace("Let's calculate the original price", said), *BOOK)
    assert plan is None and step.lead_in is not None
