"""``trajectory`` (math): the first step where the model's own output leaves every correct trajectory.

A worked solution stays on a correct trajectory while each value it writes is one the problem gives or the gold
solution reaches. The first value that is neither — a number the model *invents* (``16 x 3 = 42`` when the gold
goes ``16 - 3 - 4 = 9``) — marks the step that went wrong; when no value is new, the first place the output
*commits* to its wrong final answer does (``The answer is $-32$`` after restating "greater than $-32$").

* known values: the numbers of the document's text fields (the question and the worked solution), of the gold
  continuation, number words of the question (``three`` → 3; not in compounds like ``three-digit``), and the
  identities 0 and 1;
* skipped in the output: list and step enumerators (``1.`` at a line start, ``Step 2``), restatements of the
  question (a number whose few preceding characters appear with it in the question), a range counted out between
  two known ends (``GCD(1, 2, 3, ..., 10)``; an "n-digit" number's bounds ``100``, ``999`` are known), and a
  formula's constant (``2\\pi r``);
* a commitment to a wrong final answer that the problem itself gives (``-32``) counts only where the output gives it
  as a result (``is``, ``=``, ``answer``, ``\\boxed{``, or the output's first word), not where it uses it
  (``dividing -32 by 5``);
* the step: when the value is the result of an equation (``expr = value``, gsm8k's ``<<expr=value>>`` and LaTeX
  ``\\times`` / ``\\cdot`` included), the step is the equation's left side — the setup — and the explained token is
  the step's decision point: the token where the model's best alternative was most probable (where it chose,
  e.g. ``x`` over ``-``); contrast = that alternative. A value asserted without an equation is explained at its
  first token; contrast = the highest-ranked alternative that starts the correct final answer, else the best
  alternative;
* the sentence that states the equation's operation in words (``Since he runs 3 sprints a week, we multiply the
  distance by the number of sprints:`` before ``60 \\times 3 = 180``) belongs to the step: a model that reasons in
  prose decides the operation there, and the equation only carries it out. It is the text before the setup on its
  line, or the line above a displayed equation when that line ends with ``:`` (its last sentence), and it counts only
  when it names an operation (multiply, divide, subtract, add, sum, product, difference); the decision point is then
  chosen over that sentence and the setup together;
* a value that its own equation gets wrong while the equation's right value is on the trajectory (``3 * 68 = 181``
  where the gold reaches 204: an arithmetic slip after a right setup) is explained at the value itself, contrast =
  the highest-ranked alternative that starts the equation's right value; where the right value is off the
  trajectory too (``16 x 3 = 42``), the setup stays the step;
* where no such sentence stands next to the equation, the *plan* does: a sentence written before the output's first
  equation, with no number in it, that names the setup's operation (``Subtract the discount from the original price
  to find the original price.`` planned before ``19.50 - 25``; ``... and then multiply it by her weekly hours
  worked``). The output decided the operation there and the equation carries it out, so the plan sentence joins the
  step (the first such sentence; ``x`` / ``\\times`` / ``\\cdot`` / ``*`` name multiply, ``/`` / ``\\div`` /
  ``\\frac`` divide, ``-`` subtract, ``+`` add).

Cost: the scan's one forward; with the task's scorer and a model, the decision point's best alternatives (at most
``Budget.width``, within ``--lrp_rollouts``) are rolled out and judged, so the record says what would have fixed
it, and an alternative that makes the output correct becomes the contrast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from .arithmetic import arithmetic_errors
from .context import Context
from .operation_sentence import lead_in, plan_sentence
from .counterfactual import confirm
from .span import span_location
from .types import Generation, Location, NotFound

_NUMBER = re.compile(r"(?<![\w.\\^])-?\d+(?:(?:,|\{,\})\d{3})*(?:\.\d+)?(?![\w])")
_ENUMERATOR = re.compile(r"(?:^|\n)[ \t>*#-]*(?:\*\*)?(?:[Ss]tep\s+)?$")
_STEP_WORD = re.compile(r"(?:[Ss]tep|[Cc]ase|[Pp]art)\s+$")
_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                     "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
               "hundred": 100, "thousand": 1000, "million": 1_000_000, "dozen": 12, "twice": 2, "double": 2,
               "triple": 3})
_WORD = re.compile(r"\b(" + "|".join(sorted(_WORDS, key=len, reverse=True)) + r")\b(?!-)", re.I)
# the left side of an equation: numbers, operators, brackets, spaces, $, LaTeX operators and \text{units}
_SETUP = re.compile(r"(?:\\text\{[^{}\n]*\}|\\(?:times|cdot|div|frac|left|right|dfrac)|<<|>>|[\d\s,.$+\-*/×÷x()\[\]{}^=<>])+$")
_DIGITS = re.compile(r"\b(\w+)-digit\b", re.I)
# a number that is the coefficient of a symbolic formula, not a value: ``2\pi r``, ``2πr``, ``4\pi r^2``
_COEFFICIENT = re.compile(r"\s*(?:\\pi|π)\s*[a-z](?![a-z])")
# what commits to an answer right before a number: ``is``, ``=``, ``answer ...``, ``\boxed{``, ``####``
_COMMITS = re.compile(r"(?:\bis|\bare|=|answer[^.\n]{0,20}|\\boxed\{|####)[\s$\\(]*$", re.I)
_FINAL = [re.compile(r"####\s*(\S+)"), re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")]
RESTATE = 12  # characters before a number that, found with it in the question, make it a restatement


def value(text: str) -> Fraction | None:
    try:
        return abs(Fraction(text.replace("{,}", "").replace(",", "")))
    except (ValueError, ZeroDivisionError):
        return None


def numbers(text: str) -> list[tuple[int, str]]:
    """(offset, text) of every number in ``text``."""
    return [(m.start(), m.group()) for m in _NUMBER.finditer(text)]


def _texts(doc) -> list[str]:
    if isinstance(doc, str):
        return [doc]
    if isinstance(doc, dict):
        return [t for v in doc.values() for t in _texts(v)]
    if isinstance(doc, (list, tuple)):
        return [t for v in doc for t in _texts(v)]
    return []


def question_of(gen: Generation) -> str:
    doc = gen.doc if isinstance(gen.doc, dict) else {}
    for key in ("question", "problem", "Question", "query", "input"):
        if isinstance(doc.get(key), str):
            return doc[key]
    return gen.prompt


def known_values(gen: Generation) -> set[Fraction]:
    texts = _texts(gen.doc) + [gen.gold or ""]
    known = {Fraction(0), Fraction(1)}
    for text in texts:
        known.update(v for _, n in numbers(text) if (v := value(n)) is not None)
    question = question_of(gen)
    known.update(Fraction(_WORDS[m.group(1).lower()]) for m in _WORD.finditer(question))
    for m in _DIGITS.finditer(question):  # "three-digit": the range's bounds 100, 999 (and 1000)
        n = _WORDS.get(m.group(1).lower()) if not m.group(1).isdigit() else int(m.group(1))
        if n and 0 < n < 19:
            known.update({Fraction(10 ** (n - 1)), Fraction(10 ** n - 1), Fraction(10 ** n)})
    return known


def final_answer(gen: Generation) -> str | None:
    """The correct final answer when the gold says it (``#### 18``, the last ``\\boxed{...}``)."""
    for text in (gen.gold or "", *_texts(gen.doc)):
        for pattern in _FINAL:
            found = pattern.findall(text)
            if found:
                return found[-1].strip()
    return None


def _squash(text: str) -> str:
    return re.sub(r"[\s$\\()\[\]{}]+", " ", text).strip().lower()


@dataclass(frozen=True)
class Step:
    offset: int  # char offset of the value that leaves the trajectory
    number: str
    setup: tuple[int, int] | None  # [start, end) of the equation's left side, when the value is its result
    why: str
    final_answer: bool = False  # the commitment to the wrong final answer after steps of the output's own
    lead_in: tuple[int, int] | None = None  # [start, end) of the sentence stating the setup's operation in words
    plan: tuple[int, int] | None = None  # [start, end) of the earlier plan sentence naming it (when no lead-in)
    correct: str | None = None  # an arithmetic slip: the value the equation should have (the step is the value)

    @property
    def spans(self) -> list[tuple[int, int]]:
        """The step's character spans in the output: the plan or lead-in sentence (if any), then the setup or the
        value."""
        own = self.setup if self.setup is not None else (self.offset, self.offset + len(self.number))
        said = self.lead_in if self.lead_in is not None else self.plan
        return [said, own] if said is not None else [own]


def first_step_off(gen: Generation) -> Step | None:
    """The first value of the output off every correct trajectory, else the first commitment to a wrong final
    answer (the output's last number) that does not restate the question; None when neither exists."""
    out, known, question = gen.output, known_values(gen), _squash(question_of(gen))
    candidates = []
    for offset, num in numbers(out):
        before = out[:offset]
        enumerates = _ENUMERATOR.search(before) and re.match(r"[.):][ \t]+\S", out[offset + len(num):])
        if enumerates or _STEP_WORD.search(before) or _COEFFICIENT.match(out, offset + len(num)):
            continue
        candidates.append((offset, num))
    counted = _counting_runs(out, known)
    candidates = [(o, n) for o, n in candidates if o not in counted]
    if not candidates:
        return None
    for offset, num in candidates:
        v = value(num)
        if v is not None and v not in known:
            why = (f"{num!r} is neither given by the problem nor reached by the gold solution: the first value off "
                   "the trajectory")
            slip = next((e for e in arithmetic_errors(out) if e.offset == offset), None)
            if slip is not None and value(slip.correct) in known:
                # a setup on the trajectory whose arithmetic is wrong: the slip is the value, not the setup (when
                # the setup's right value is off the trajectory too, ``16 x 3 = 42``, the setup stays the step)
                return Step(offset, num, None, f"{why}, and its own equation is wrong ({slip.reason})",
                            correct=slip.correct)
            return _step(out, offset, num, why)
    last = value(candidates[-1][1])
    gold = final_answer(gen)
    if gold is not None and value(gold.lstrip("$")) == last:
        return None  # the output's last number is the right answer: the error is not in the values
    for offset, num in candidates:
        if value(num) != last:
            continue
        before = out[max(0, offset - RESTATE): offset]
        if len(_squash(before)) >= 4 and _squash(before + num) in question:
            continue  # restating the question
        opens = not out[:offset].strip(" \t\n$\\(")  # the output starts with it: the answer itself
        if last in known and not opens and not _COMMITS.search(out[max(0, offset - 40): offset]):
            continue  # a value the problem gives, used (``dividing -32 by 5``), not yet given as the answer
        return _step(out, offset, num, f"the output commits to its final answer {num!r} here", final_answer=not opens)
    return None


def _counting_runs(out: str, known: set[Fraction]) -> set[int]:
    """Offsets of the numbers inside a listed run of consecutive integers whose ends the problem gives
    (``GCD(1, 2, 3, ..., 10)`` for "the first ten positive integers"): counting out a range, not new values."""
    found, nums = set(), numbers(out)
    i = 0
    while i < len(nums):
        j = i
        while (j + 1 < len(nums) and re.fullmatch(r",\s*", out[nums[j][0] + len(nums[j][1]): nums[j + 1][0]])
               and value(nums[j + 1][1]) is not None and value(nums[j][1]) is not None
               and value(nums[j + 1][1]) - value(nums[j][1]) == 1):
            j += 1
        if j - i >= 2 and value(nums[i][1]) in known and value(nums[j][1]) in known:
            found.update(o for o, _ in nums[i: j + 1])
        i = j + 1
    return found


def _step(out: str, offset: int, num: str, why: str, final_answer: bool = False) -> Step:
    setup = _setup(out, offset)
    lead = lead_in(out, setup[0]) if setup is not None else None
    plan = plan_sentence(out, setup) if setup is not None and lead is None else None
    return Step(offset, num, setup, why, final_answer, lead, plan)


def _setup(out: str, offset: int) -> tuple[int, int] | None:
    """[start, end) of the left side of the equation whose result starts at ``offset`` (None: not a result)."""
    line_start = out.rfind("\n", 0, offset) + 1
    before = out[line_start:offset]
    if not re.search(r"=[\s$]*(?:<<[^<>]*>>|<<)?[\s$]*$", before):  # '= v', '= <<a*b=c>>v', '= <<v>>
        return None
    left = before[: before.rfind("=")]
    m = _SETUP.search(left)
    if not m:
        return None
    seg = left[m.start():]
    first = re.search(r"[\d(]", seg)  # the setup starts at its first number or bracket
    if not first:
        return None
    stop = seg.find("=", first.start())  # and ends before the chain's first '='
    start = line_start + m.start() + first.start()
    end = line_start + m.start() + (stop if stop >= 0 else len(seg))
    end = len(out[:end].rstrip(" $<\\"))
    return (start, end) if end > start else None


class TrajectoryLocator:
    name = "trajectory"
    evidence = ("gold",)  # the step: the first value off the gold's (and the question's) values

    def locate(self, gen: Generation, ctx: Context) -> Location:
        step = first_step_off(gen)
        if step is None:
            raise NotFound("every value of the output is on a correct trajectory, and no wrong final answer found")
        n = len(gen.output_ids)
        said = "plan sentence" if step.plan is not None else "operation sentence"
        if step.setup is not None:
            *sentence, setup = step.spans  # the sentence stating the operation (if any), then the setup
            labelled = ([(i, said) for span in sentence for i in ctx.tokens_in(gen, *span)]
                        + [(i, "setup token") for i in ctx.tokens_in(gen, *setup)])
        else:
            labelled = [(ctx.index_at(gen, step.offset), "value")]
        labelled = [(i, w) for i, w in labelled if i < n] or [(min(ctx.index_at(gen, step.offset), max(n - 1, 0)),
                                                                "value")]
        positions = [i for i, _ in labelled]
        if not gen.output_ids:
            raise NotFound("empty output")
        index, contrast, how = positions[0], None, "no model to rank alternatives"
        if ctx.model is not None:
            if step.setup is not None:
                index, contrast = ctx.decision_point(gen, positions)
                how = "the step's decision point (its most probable alternative)"
            else:  # a bare value: towards the equation's right value (a slip), else the correct final answer
                want, what = ((step.correct, "the equation's right value") if step.correct is not None
                              else (final_answer(gen), "the correct answer"))
                contrast = _alternative(gen, ctx, index, _starts(want)) if want else None
                how = f"an alternative that starts {what}"
                if contrast is None:
                    contrast = _alternative(gen, ctx, index, lambda piece: True)
                    how = f"the model's best alternative (none among its top-k starts {what})"
        fix, rolled = confirm(gen, ctx, index, contrast)
        if fix is not None:
            contrast, how = fix, "the highest-ranked alternative whose rollout the task's scorer accepts"
        where = (f"the setup {gen.output[step.setup[0]:step.setup[1]]!r} of that value"
                 if step.setup is not None else "the value itself")
        if step.lead_in is not None:
            where += f" with the sentence stating its operation {gen.output[step.lead_in[0]:step.lead_in[1]]!r}"
        elif step.plan is not None:
            where += f" with the plan that names its operation {gen.output[step.plan[0]:step.plan[1]]!r}"
        reason = f"{step.why}; explained: {where}, contrast = {how}"
        loc = span_location(gen, ctx, self.name, positions, index, contrast, reason,
                            [w for _, w in labelled], rolled)
        loc.final_answer = step.final_answer
        return loc


def _starts(answer: str):
    want = answer.replace("\\!", "").replace("{,}", "").replace(",", "").strip("$ ")

    def accept(piece: str) -> bool:
        core = piece.strip().lstrip("$")
        return bool(core) and want.startswith(core)

    return accept


def _alternative(gen: Generation, ctx: Context, index: int, accept) -> int | None:
    s = ctx.scan(gen)
    for t in s.topk_ids[index].tolist():
        if t != gen.output_ids[index] and t not in ctx.eos_ids and accept(ctx.decode([t])):
            return int(t)
    return None
