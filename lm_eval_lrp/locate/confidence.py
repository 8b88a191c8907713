"""How a location was established: ``confirmed``, ``single`` or ``fallback`` (each generate_until record says which).

* ``confirmed`` — a rollout from the explained contrast at the explained token made the task's scorer accept the
  output, where another locator than the rollout search chose the token (the search's own first acceptance is how it
  chose, and on code it is usually a rewrite of the whole solution from an early token), or two independent
  locators name the same step of the output (an earliest-of link such as
  ``prm+trajectory`` where both fire inside one step), or a person annotated the position (``cases``). Independent:
  the two declare disjoint ``evidence`` (:data:`EVIDENCE`); ``trajectory`` and ``hindsight`` both read the gold
  solution, and two readers of the gold both see the first value that leaves it, wherever the error was made;
* ``single`` — one heuristic found it and nothing checked it; also locators agreeing on evidence they share; also a
  location at the output's commitment to its wrong final answer after steps of its own (``Location.final_answer``),
  even where locators agree on it or a rollout that writes the right answer there is accepted: that only repeats the
  task's verdict;
* ``fallback`` — the first divergence from the gold solution (``gold``): a guess, not a finding.

Records where nothing was located have no confidence; reports list their candidates instead of a token.
"""

from __future__ import annotations

from .types import Location

CONFIRMED, SINGLE, FALLBACK = "confirmed", "single", "fallback"
LEVELS = (CONFIRMED, SINGLE, FALLBACK)

#: what a locator's finding may rest on besides the prompt and the output, which every locator reads: declared as
#: ``evidence`` (a class attribute, or an instance's where its options change it; none declared: no agreement with it
#: confirms anything). Two locators naming the same step confirm the location only when their evidence is disjoint
#: (:func:`confidence`): two readers of the gold solution both see the first value that leaves it, wherever the error
#: was made.
EVIDENCE = {
    "gold": "the gold solution",
    "model": "the evaluated model's probabilities",
    "reference": "a reference model",
    "judge": "LLM judges",
    "prm": "a process reward model",
    "scorer": "the task's scorer",
    "tests": "the task's tests",
    "equations": "the output's own equations",
    "instructions": "the prompt's instructions",
    "syntax": "the code's syntax",
    "person": "a person's annotation",
}

#: locators whose finding is a guess rather than evidence of the error
GUESSES = frozenset({"gold"})
#: locators whose finding is a person's decision
BY_HAND = frozenset({"cases"})


def step_of(text: str, offset: int | None) -> int | None:
    """The index of the step (a line, or a sentence within one) holding char ``offset`` of ``text``."""
    if offset is None:
        return None
    from .judge import steps

    spans = steps(text)
    if not spans:
        return None
    return next((n for n, (_, b) in enumerate(spans) if offset < b), len(spans) - 1)


#: locators whose position *is* the first accepted rollout: that acceptance is their finding, not a check of it
SEARCHES_BY_ROLLOUT = frozenset({"rollout"})


def confirming_rollout(loc: Location) -> bool:
    """Whether a rollout forcing the location's contrast at its token made the task's scorer accept the output, where
    another locator chose the token (the rollout search's own first acceptance checks nothing: it is how it chose)."""
    if loc.continuation is not None or loc.contrast is None or loc.locator in SEARCHES_BY_ROLLOUT:
        return False
    return any(r.position == loc.index and r.forced == loc.contrast and r.verdict for r in loc.rollouts)


def independent_pair(loc: Location) -> tuple[str, str] | None:
    """Two of the locators that name the location's step (the finder and the ``agreeing`` ones) whose declared
    evidence (``Location.evidence``) is disjoint, the finder first; None when every pair shares some evidence or a
    locator declared none."""
    names = [loc.locator, *loc.agreeing]
    for n, a in enumerate(names):
        for b in names[n + 1:]:
            ea, eb = set(loc.evidence.get(a, ())), set(loc.evidence.get(b, ()))
            if ea and eb and not ea & eb:
                return a, b
    return None


def _reads(loc: Location, name: str) -> str:
    """What locator ``name`` read, in words."""
    return " and ".join(EVIDENCE.get(e, e) for e in loc.evidence.get(name, ())) or "no evidence declared"


def _shared(loc: Location) -> str:
    """Why the locators naming the step are not independent, in words."""
    names = [loc.locator, *loc.agreeing]
    silent = [n for n in names if not loc.evidence.get(n)]
    if silent:
        return f"{' and '.join(silent)} declare{'s' if len(silent) == 1 else ''} no evidence"
    common = set.intersection(*(set(loc.evidence[n]) for n in names))
    if common:
        return f"{'both' if len(names) == 2 else 'all'} read {' and '.join(EVIDENCE.get(e, e) for e in sorted(common))}"
    return "each pair of them shares some evidence"


def confidence(loc: Location) -> tuple[str, str]:
    """(level, why) of a location."""
    if loc.locator in BY_HAND:
        return CONFIRMED, "a person's annotation"
    if loc.final_answer:  # the scorer's own finding: neither agreement nor a fixing rollout there confirms more
        found = " and ".join([loc.locator, *loc.agreeing])
        return SINGLE, (f"{found} name{'' if loc.agreeing else 's'} the output's commitment to its wrong final answer "
                        "after steps of its own: the task's scorer already said the answer is wrong, and nothing "
                        "confirms which earlier step made it so")
    if confirming_rollout(loc):
        return CONFIRMED, "forcing the contrast at this token makes the task's scorer accept the output"
    if loc.agreeing:
        pair = independent_pair(loc)
        if pair is not None:
            a, b = pair
            return CONFIRMED, (f"{a}, from {_reads(loc, a)}, and {b}, from {_reads(loc, b)}, name the same step "
                               "(independent evidence)")
        return SINGLE, (f"{' and '.join([loc.locator, *loc.agreeing])} name the same step, but not on independent "
                        f"evidence ({_shared(loc)}); no rollout from the contrast was accepted")
    if set(loc.locator.split("+")) <= GUESSES:
        return FALLBACK, "the first divergence from the gold solution (a guess: nothing confirmed it)"
    if loc.locator in SEARCHES_BY_ROLLOUT and any(r.position == loc.index and r.verdict for r in loc.rollouts):
        return SINGLE, ("the rollout search's finding: the earliest token where forcing an alternative makes the task's "
                        "scorer accept the output; a different path from here passes, which does not show that the "
                        "error is here (often the model rewrites the whole solution)")
    return SINGLE, f"one heuristic ({loc.locator}); no rollout from the contrast was accepted"
