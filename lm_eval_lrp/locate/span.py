"""The closing step that every span-finding locator shares: the span's tokens as candidates, and the Location.

A locator that finds a span of the output (a crashing line, a step that leaves the gold trajectory, a step judges
name) chooses one token of it (usually :meth:`Context.decision_point`, possibly confirmed by a rollout) and ends
with :func:`span_location`, so that every such record lists the same number of candidates the same way.
"""

from __future__ import annotations

from typing import Sequence

from .context import Context
from .types import Generation, Location, Rollout

#: how many of a span's tokens a record lists as candidates (the model's top-k at each)
MAX_CANDIDATES = 12


def span_location(gen: Generation, ctx: Context, locator: str, positions: Sequence[int], index: int,
                  contrast: int | None, reason: str, why: str | Sequence[str],
                  rollouts: Sequence[Rollout] = ()) -> Location:
    """The output token ``index`` (one of ``positions``, the span's output tokens) explained against ``contrast``;
    ``why`` labels the candidates: one label for all, or one per position (a step's sentence and its setup)."""
    whys = [why] * len(positions) if isinstance(why, str) else list(why)
    if len(whys) != len(positions):
        raise ValueError(f"{len(whys)} candidate labels for {len(positions)} positions")
    listed = list(zip(positions, whys))
    k = list(positions).index(index) if index in positions else 0
    lo = 0 if k < MAX_CANDIDATES else min(k - MAX_CANDIDATES // 2, len(listed) - MAX_CANDIDATES)
    # the span's first tokens, or, where the explained one lies further in, the tokens around it
    candidates = [ctx.candidate(gen, i, w) for i, w in listed[lo: lo + MAX_CANDIDATES]]
    return Location(index, gen.output_ids[index], contrast, locator, reason,
                    output_offset=ctx.offsets(gen.output_ids)[index], candidates=candidates, rollouts=list(rollouts))
