"""Rollouts at several output positions as one batch give the tokens and verdicts of one position at a time."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import tiny_model
from locate_helpers import CharTokenizer

from lm_eval_lrp.locate import Budget, Context, Generation, NotFound
from lm_eval_lrp.locate.context import scan
from lm_eval_lrp.locate.decoding import greedy_after, greedy_fresh, prefix_cache
from lm_eval_lrp.locate.rollout import RolloutLocator
from lm_eval_lrp.locate.rollout_batch import can_batch, greedy_rows

TOK = CharTokenizer()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _case(model, prompt="Question: 7*8?", n=12):
    ids = TOK.encode(prompt)
    out = greedy_fresh(model, ids, n)
    return Generation(ids, out, TOK.decode(out))


class Scorer:
    """Accepts an output whose first change against the original is at one of ``fixing`` (counts its calls)."""

    def __init__(self, original: str, fixing: set[int]):
        self.original, self.fixing, self.calls = original, fixing, 0

    def __call__(self, text: str) -> bool:
        self.calls += 1
        k = next((j for j, (a, b) in enumerate(zip(text, self.original)) if a != b), None)
        return k in self.fixing


@pytest.mark.parametrize("arch", ["llama", "qwen3", "gpt2"])
def test_rows_at_different_positions_equal_one_position_at_a_time(arch):
    model = tiny_model(arch)
    gen = _case(model)
    s = scan(model, gen.prompt_ids, gen.output_ids)
    assert can_batch(s.cache)
    rows = [(0, 11), (7, 40), (3, 12), (3, 13), (11, 2), (5, 60)]  # 2 = end of sequence: the row stops at once
    eos = frozenset({2})
    got = greedy_rows(model, s.cache, len(gen.prompt_ids), rows, 9, eos)
    ids = gen.prompt_ids + gen.output_ids
    for (i, alt), tokens in zip(rows, got):
        cache = prefix_cache(model, s.cache, ids, len(gen.prompt_ids) + i, 1)
        assert tokens == greedy_after(model, cache, [alt], 9, eos)[0], (i, alt)
    assert got[4] == []


@pytest.mark.parametrize("fixing", [set(), {5}, {2, 9}])
@pytest.mark.parametrize("budget", [Budget(max_rollouts=8, max_new_tokens=10, width=3),
                                    Budget(max_rollouts=5, max_new_tokens=6, width=2)])
def test_batched_search_records_what_one_position_at_a_time_records(fixing, budget):
    model = tiny_model("llama")
    gen = _case(model)
    answers = []
    for batched in (False, True):
        scorer = Scorer(gen.output, fixing)
        ctx = Context.from_tokenizer(TOK, model, budget=budget).for_doc(scorer)
        locator = RolloutLocator(min_alternative=1e-9, batched=batched)
        try:
            loc = locator.locate(gen, ctx)
            answers.append(("found", loc.index, loc.contrast, [dataclasses.asdict(r) for r in loc.rollouts],
                            loc.budget_exhausted, [dataclasses.asdict(c) for c in loc.candidates], scorer.calls))
        except NotFound as err:
            answers.append(("not found", str(err), [dataclasses.asdict(r) for r in err.rollouts], scorer.calls))
    assert answers[0] == answers[1]
    assert answers[0][-1] >= 1  # the scorer judged only the rollouts the search took, in both


def test_sliding_window_caches_keep_one_position_at_a_time():
    model = tiny_model("gemma3")
    gen = _case(model)
    s = scan(model, gen.prompt_ids, gen.output_ids)
    scorer = Scorer(gen.output, {2})
    ctx = Context.from_tokenizer(TOK, model, budget=Budget(max_rollouts=8, max_new_tokens=5, width=2)).for_doc(scorer)
    loc = RolloutLocator(min_alternative=1e-9).locate(gen, ctx)
    if not can_batch(s.cache):
        assert RolloutLocator(min_alternative=1e-9)._ahead(gen, ctx, [], list(range(5)), ctx.budget) == {}
    assert loc.index == 2


@pytest.mark.parametrize("fixing", [set(), {5}])
def test_rollouts_stay_within_the_tasks_generation_budget(fixing):
    """A rollout forced at output token i generates at most max_gen_toks - i - 1 tokens (lm-eval would have cut the
    output there), batched or not, and both ways record the same rollouts."""
    model = tiny_model("llama")
    plain = _case(model)
    gen = dataclasses.replace(plain, max_gen_toks=len(plain.output_ids))  # an output cut at the budget, as many are
    budget = Budget(max_rollouts=8, max_new_tokens=10, width=2)
    answers = []
    for batched in (False, True):
        ctx = Context.from_tokenizer(TOK, model, budget=budget).for_doc(Scorer(gen.output, fixing))
        try:
            rolled = RolloutLocator(min_alternative=1e-9, batched=batched).locate(gen, ctx).rollouts
        except NotFound as err:
            rolled = err.rollouts
        assert rolled
        for r in rolled:
            assert r.tokens <= min(budget.max_new_tokens, gen.max_gen_toks - r.position - 1), r
        answers.append([dataclasses.asdict(r) for r in rolled])
    assert answers[0] == answers[1]
    # a late position has less room than the budget: the cap is what binds there
    assert any(r["position"] + 1 + budget.max_new_tokens > gen.max_gen_toks for r in answers[0])
