"""How a location was established: ``confirmed``, ``single`` or ``fallback`` (each generate_until record says which).

* ``confirmed`` — a rollout from the explained contrast at the explained token made the task's scorer accept the
  output, or two independent locators name the same step of the output (an earliest-of link such as
  ``trajectory+reference`` where both fire inside one step), or a person annotated the position (``cases``);
* ``single`` — one heuristic found it and nothing checked it; also a location at the output's commitment to its
  wrong final answer after steps of its own (``Location.final_answer``), even where locators agree on it or a rollout
  that writes the right answer there is accepted: that only repeats the task's verdict;
* ``fallback`` — the first divergence from the gold solution (``gold``): a guess, not a finding.

Records where nothing was located have no confidence; reports list their candidates instead of a token.
"""

from __future__ import annotations

from .types import Location

CONFIRMED, SINGLE, FALLBACK = "confirmed", "single", "fallback"
LEVELS = (CONFIRMED, SINGLE, FALLBACK)

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


def confirming_rollout(loc: Location) -> bool:
    """Whether a rollout forcing the location's contrast at its token made the task's scorer accept the output."""
    if loc.continuation is not None or loc.contrast is None:
        return False
    return any(r.position == loc.index and r.forced == loc.contrast and r.verdict for r in loc.rollouts)


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
        return CONFIRMED, f"{' and '.join([loc.locator, *loc.agreeing])} name the same step"
    if set(loc.locator.split("+")) <= GUESSES:
        return FALLBACK, "the first divergence from the gold solution (a guess: nothing confirmed it)"
    return SINGLE, f"one heuristic ({loc.locator}); no rollout from the contrast was accepted"
