"""``rollout``: counterfactual search with the task's own scorer.

At candidate positions of the model's output, each of the model's next-best tokens is forced and the output
continued greedily (from the KV cache of the shared prefix; the alternatives of one position as one batch); the
rolled-out output is scored by ``Context.score`` (the task's filters and ``process_results``). The error token is
the earliest position where an alternative turns the document correct; that alternative (the highest-ranked one
that does) is the contrast.

Candidates: the verifier's hits first (they are likely culprits and cheap to confirm), then "forks" — positions
where the model's best alternative has probability ≥ ``min_alternative`` — in output order. Once a fix is found
at position h, only earlier forks are still tried, earliest first. The budget (:class:`Budget`) bounds the
rollouts and the new tokens of each; running out is recorded (``budget_exhausted``).
"""

from __future__ import annotations

import math

import torch

from .context import Budget, Context
from .counterfactual import roll_out, room, stopper
from .rollout_batch import can_batch, greedy_rows
from .types import Generation, Location, NotFound
from .verifier import verifier_hits


class RolloutLocator:
    name = "rollout"
    needs = ("model", "budget")
    evidence = ("model", "scorer")

    def __init__(self, budget: Budget | None = None, min_alternative: float = 0.05, use_verifier: bool = True,
                 batched: bool = True):
        self.budget, self.min_alternative, self.use_verifier = budget, min_alternative, use_verifier
        self.batched = batched  # every rollout the budget allows generated up front as one batch

    def _alternatives(self, gen, ctx, i, width) -> list[int]:
        s = ctx.scan(gen)
        return [int(t) for t in s.topk_ids[i].tolist() if t != gen.output_ids[i]][:width]

    def positions(self, gen: Generation, ctx: Context) -> tuple[list[int], list[int]]:
        """(verifier-hit positions, fork positions in output order)."""
        n = len(gen.output_ids)
        hits = []
        if self.use_verifier:
            for h in verifier_hits(gen, ctx):
                i = ctx.index_at(gen, h.offset)
                if i < n and i not in hits:
                    hits.append(i)
        s = ctx.scan(gen)
        floor = math.log(self.min_alternative)
        forks = []
        for i in range(n):
            alts = [v for t, v in zip(s.topk_ids[i].tolist(), s.topk_logprobs[i].tolist()) if t != gen.output_ids[i]]
            if alts and alts[0] >= floor:
                forks.append(i)
        return hits, forks

    def locate(self, gen: Generation, ctx: Context) -> Location:
        if ctx.score is None:
            raise NotFound("no scorer for this task: rollouts cannot be judged")
        if ctx.model is None:
            raise NotFound("needs the model")
        if not gen.output_ids:
            raise NotFound("empty output")
        budget = self.budget or ctx.budget
        hits, forks = self.positions(gen, ctx)
        state = {"left": budget.max_rollouts, "exhausted": False, "rollouts": [], "tried": [], "why": {},
                 "ahead": self._ahead(gen, ctx, hits, forks, budget) if self.batched else {}}

        fix = None
        for i in hits:
            fix = self._try(gen, ctx, i, budget, state, "verifier hit")
            if fix is not None:
                break
        limit = fix[0] if fix is not None else len(gen.output_ids)
        for i in forks:
            if i >= limit:
                break
            if i in state["tried"]:
                continue
            found = self._try(gen, ctx, i, budget, state, "fork")
            if found is not None:
                fix = found
                break
        tried = [ctx.candidate(gen, i, why) for i, why in state["why"].items()]
        n_roll = len(state["rollouts"])
        if fix is None:
            more = " (budget exhausted)" if state["exhausted"] else ""
            raise NotFound(f"no alternative among the model's top-{ctx.topk} at {len(state['tried'])} positions "
                           f"turns the document correct ({n_roll} rollouts{more})", rollouts=state["rollouts"])
        i, alt = fix
        reason = (f"forcing {ctx.token(alt)!r} instead of {ctx.token(gen.output_ids[i])!r} at output token {i} "
                  f"makes the task's scorer accept the output ({n_roll} rollouts)")
        return Location(i, gen.output_ids[i], alt, self.name, reason, output_offset=ctx.offsets(gen.output_ids)[i],
                        candidates=tried, rollouts=state["rollouts"], budget_exhausted=state["exhausted"])

    def _plan(self, gen, ctx, hits, forks, budget) -> list[tuple[int, int]]:
        """The (position, forced token) rows the search rolls out when no alternative fixes the document: the
        verifier hits, then the forks, within the budget, as :meth:`_try` spends it."""
        rows, left = [], budget.max_rollouts
        for i in hits + [f for f in forks if f not in hits]:
            alts = self._alternatives(gen, ctx, i, budget.width)[:left]
            if not alts:
                if left <= 0:
                    break
                continue
            left -= len(alts)
            rows += [(i, a) for a in alts]
        return rows

    def _ahead(self, gen, ctx, hits, forks, budget) -> dict:
        """(position, forced token) -> its greedy tokens, for every row of the plan, from one batched decoding
        (empty where the cache cannot be laid out as one batch). Nothing is scored here: the search scores only the
        rollouts it takes, as one position at a time does."""
        cache = ctx.scan(gen).cache
        rows = self._plan(gen, ctx, hits, forks, budget)
        if len(rows) < 2 or not can_batch(cache):
            return {}
        try:
            longest = max(room(gen, i, budget.max_new_tokens) for i, _ in rows)
            tokens = greedy_rows(ctx.model, cache, len(gen.prompt_ids), rows, longest, ctx.eos_ids,
                                 stopper(gen, ctx))
        except torch.OutOfMemoryError:  # every row's copy of a long prefix is too much: one position at a time
            return {}
        return dict(zip(rows, tokens))

    def _try(self, gen, ctx, i, budget, state, why):
        """Roll out the alternatives at position i; the first (highest-ranked) that the scorer accepts, or None."""
        alts = self._alternatives(gen, ctx, i, budget.width)
        if not alts:
            return None
        if state["left"] < len(alts):
            state["exhausted"] = True
            alts = alts[: state["left"]]
            if not alts:
                return None
        state["left"] -= len(alts)
        state["tried"].append(i)
        state["why"][i] = why
        rolled = roll_out(gen, ctx, i, alts, budget.max_new_tokens, state["ahead"])
        state["rollouts"].extend(rolled)
        winner = next((r.forced for r in rolled if r.verdict), None)
        return None if winner is None else (i, winner)
