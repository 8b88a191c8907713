"""Where an output states a step's operation in words: the sentence right before an equation (``Since he runs 3
sprints a week, we multiply the distance by the number of sprints:`` then ``60 \\times 3 = 180``), or, failing that,
the plan written before the output's first equation (``Subtract the discount from the original price to find the
original price.`` then, later, ``19.50 - 25``). A model that reasons in prose decides the operation there; the equation
only carries it out. Pure text; ``trajectory`` joins such a sentence to the step it explains.
"""

from __future__ import annotations

import re

# an operation named in words: what a lead-in sentence must say to belong to the step
_OPERATION = re.compile(r"\b(?:multipl(?:y|ies|ying|ied|ication)|divid(?:e|es|ing|ed)|division|"
                        r"subtract(?:s|ing|ed|ion)?|add(?:s|ing|ed|ition)?|sum|product|difference)\b", re.I)
# a quantity's name inside a displayed equation (``\\text{Remaining students} = 20 - 4``): not a sentence
_LABEL = re.compile(r"\\(?:text|mathrm)\{[^{}]*\}")
# a line that only opens a displayed equation
_DISPLAY = re.compile(r"\s*(?:\\\[|\$\$|\\begin\{align\*?\})?\s*")


def lead_in(out: str, start: int) -> tuple[int, int] | None:
    """[start, end) of the sentence that introduces the setup starting at ``start`` by naming its operation in words:
    the last sentence before the setup on its own line, else (a displayed equation) the last sentence of the line
    above it when that line ends with ``:``; None when there is none or it names no operation."""
    line_start = out.rfind("\n", 0, start) + 1
    if re.search(r"[A-Za-z]{3}", _LABEL.sub("", out[line_start:start])):  # prose on the setup's own line
        lo, hi = line_start, start
    else:  # a display: skip the lines that only open it, then the line that announces it
        end = line_start - 1
        while end > 0:
            lo = out.rfind("\n", 0, end) + 1
            if not _DISPLAY.fullmatch(out[lo:end]):
                break
            end = lo - 1
        if end <= 0 or not out[:end].rstrip().endswith(":"):
            return None
        lo, hi = out.rfind("\n", 0, end) + 1, end
    stop = out.rfind(". ", lo, hi)
    sentence = stop + 2 if stop >= 0 else lo  # the last sentence of that text
    while sentence < hi and out[sentence] in " \t-*>":
        sentence += 1
    text = out[sentence:hi].rstrip(" \t$\\([:")
    if not _OPERATION.search(text):
        return None
    return (sentence, sentence + len(text)) if text else None


# the operations a setup carries out, by its operators, and the words that name each in a plan
_OPERATORS = {
    "multiply": re.compile(r"\\times|\\cdot|×|\*|(?<=\d)\s*x\s*(?=\d)"),
    "divide": re.compile(r"\\div|÷|/|\\frac"),
    "subtract": re.compile(r"(?<=[\d}\s)])-\s*[\d(]"),
    "add": re.compile(r"\+"),
}
_NAMES = {
    "multiply": re.compile(r"\b(?:multipl(?:y|ies|ying|ied|ication)|product)\b", re.I),
    "divide": re.compile(r"\b(?:divid(?:e|es|ing|ed)|division|quotient)\b", re.I),
    "subtract": re.compile(r"\b(?:subtract(?:s|ing|ed|ion)?|difference|minus|deduct(?:s|ing|ed)?)\b", re.I),
    "add": re.compile(r"\b(?:add(?:s|ing|ed|ition)?|sum(?:s|ming)?|plus)\b", re.I),
}
# what ends the output's plan: its first equation (``=``, a displayed equation, gsm8k's ``<<``)
_FIRST_EQUATION = re.compile(r"=|\\\[|<<|\$\$")


def plan_sentence(out: str, setup: tuple[int, int]) -> tuple[int, int] | None:
    """[start, end) of the first sentence of the output's plan (the prose before its first equation and before the
    setup) that names one of the setup's operations and writes no number; None when there is none."""
    ops = [op for op, sign in _OPERATORS.items() if sign.search(out, setup[0], setup[1])]
    first = _FIRST_EQUATION.search(out)
    end = min(setup[0], first.start() if first else len(out))
    for m in re.finditer(r"[^\n.:!?]+", out[:end]):
        text = m.group()
        if re.search(r"\d", text) or not re.search(r"[A-Za-z]{3}", text):
            continue
        if any(_NAMES[op].search(text) for op in ops):
            lo = m.start() + len(text) - len(text.lstrip(" \t-*>"))
            return lo, m.start() + len(text.rstrip())
    return None
