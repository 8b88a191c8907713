"""Rolling out alternatives: force a token at an output position, continue greedily, and ask the task's scorer.

Every locator that checks its finding does it here (:func:`confirm`: the explained contrast and the model's next-best
tokens at the explained position), and the ``rollout`` search (:mod:`lm_eval_lrp.locate.rollout`) is built on
:func:`roll_out`. The continuation stops at the task's stop sequences and never runs past the task's own
``max_gen_toks`` (:func:`room`).
"""

from __future__ import annotations

from .context import Context
from .decoding import greedy_after, prefix_cache
from .types import Generation, LocateError, Rollout

TRUNCATE = 200  # characters of each rollout's continuation kept in the record


def cut_at(text: str, until) -> str:
    """lm-eval's stop-sequence cut: the text before the first occurrence of any stop sequence."""
    for term in until:
        if term:
            text = text.split(term)[0]
    return text


def stopper(gen: Generation, ctx: Context):
    """True once a rollout's new tokens contain one of the task's stop sequences."""
    until = gen.until

    def stop(tokens):
        return bool(until) and any(u and u in ctx.decode(tokens) for u in until)

    return stop


def room(gen: Generation, i: int, max_new_tokens: int) -> int:
    """New tokens a rollout forced at output position ``i`` may generate: the budget's ``max_new_tokens``, and no
    more than the task's own generation budget leaves after the prefix and the forced token (lm-eval would have cut
    the output there, so a fix that needs more tokens is not a fix the task's scorer would have seen)."""
    if gen.max_gen_toks is None:
        return max_new_tokens
    return max(0, min(max_new_tokens, gen.max_gen_toks - i - 1))


def roll_out(gen: Generation, ctx: Context, i: int, alts: list[int], max_new_tokens: int,
             ahead: dict | None = None) -> list[Rollout]:
    """Force each of ``alts`` at output position ``i``, continue greedily (one batch, from the cached prefix, to
    the task's stop sequences, within :func:`room`) and judge each whole output with the task's scorer. ``ahead``:
    (i, alt) -> tokens already generated (:func:`lm_eval_lrp.locate.rollout_batch.greedy_rows`, perhaps further than
    this position's room: greedy decoding is the same up to there), used when it holds every alt."""
    until = gen.until
    limit = room(gen, i, max_new_tokens)
    if ahead and all((i, a) in ahead for a in alts):
        rows = [ahead[(i, a)][:limit] for a in alts]
    else:
        s = ctx.scan(gen)
        ids = gen.prompt_ids + gen.output_ids
        cache = prefix_cache(ctx.model, s.cache, ids, len(gen.prompt_ids) + i, len(alts))
        rows = greedy_after(ctx.model, cache, alts, limit, ctx.eos_ids, stopper(gen, ctx))
    prefix_text = ctx.decode(gen.output_ids[:i])
    out = []
    for alt, row in zip(alts, rows):
        text = cut_at(ctx.decode(list(gen.output_ids[:i]) + [alt] + row), until)
        try:
            verdict = bool(ctx.score(text))
        except Exception as err:  # noqa: BLE001 - the task's scorer is user code
            raise LocateError(f"the task's scorer raised on a rollout: {type(err).__name__}: {err}") from err
        tail = text[len(prefix_text):] if text.startswith(prefix_text) else text
        out.append(Rollout(i, alt, ctx.token(alt), tail[:TRUNCATE], verdict, len(row)))
    return out


def confirm(gen: Generation, ctx: Context, index: int, contrast: int | None) -> tuple[int | None, list[Rollout]]:
    """Roll out ``contrast`` and the model's next-best tokens at ``index`` (at most ``Budget.width``, within the
    budget; ``index`` may be ``len(output_ids)``: after the whole output) and judge each: (the highest-ranked alternative the task's scorer accepts, else None; the rollouts).
    Nothing is rolled out without a model, a scorer, a contrast or a budget."""
    if ctx.model is None or ctx.score is None or contrast is None or ctx.budget.max_rollouts <= 0:
        return None, []
    s = ctx.scan(gen)
    if index < len(gen.output_ids):
        ranked, own = s.topk_ids[index].tolist(), gen.output_ids[index]
    else:  # after the whole output: the model's own next choice (usually the end of text) and its alternatives
        ranked = s.last_logits.topk(min(ctx.topk, s.last_logits.numel())).indices.tolist()
        own = ranked[0]
    others = [int(t) for t in ranked if t not in (own, contrast) and t not in ctx.eos_ids]
    alts = ([contrast] + others)[: max(1, min(ctx.budget.width, ctx.budget.max_rollouts))]
    rolled = roll_out(gen, ctx, index, alts, ctx.budget.max_new_tokens)
    return next((r.forced for r in rolled if r.verdict), None), rolled
