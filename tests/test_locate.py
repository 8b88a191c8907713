"""Locators on tiny seeded models with a character-level tokenizer: what each explains, and the chain around them."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import tiny_model
from locate_helpers import CharTokenizer

from lm_eval_lrp.locate import Budget, Chain, Context, Generation, LocateError, Location, NotFound, Rollout, Scan, make
from lm_eval_lrp.locate.decoding import greedy_after, greedy_fresh, prefix_cache
from lm_eval_lrp.locate.counterfactual import TRUNCATE
from lm_eval_lrp.locate import rollout as rollout_module
from lm_eval_lrp.locate.verifier import Hit

TOK = CharTokenizer()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads(), torch.set_num_threads(1)
    yield
    torch.set_num_threads(before[0])


@pytest.fixture(scope="module")
def model():
    return tiny_model("llama")


def greedy_output(model, prompt_ids, n=14):
    """The model's own greedy output (no special tokens, so text and tokens line up one char per token)."""
    out = greedy_fresh(model, prompt_ids, n)
    assert all(t >= 3 for t in out), "the seeded model emits a special token; pick another prompt"
    return out


def ctx_for(model=None, **kw):
    return Context.from_tokenizer(TOK, model, **kw)


def fixed_scan(topk: list[list[int]], n_out: int) -> Scan:
    """A hand-made scan: the model's top-k at each output position (log-probs descending)."""
    ids = torch.tensor(topk)
    values = torch.log(torch.linspace(0.5, 0.01, ids.shape[1])).expand(n_out, -1)
    return Scan(ids, values, values[:, 0].clone(), None, torch.zeros(100))


def gen_of(output: str, prompt: str = "Q:", **kw) -> Generation:
    return Generation(TOK.encode(prompt), TOK.encode(output), output, **kw)


# ----------------------------------------------------------------------------- types and chain


def test_location_converts_to_the_explained_contrast():
    gen = gen_of("abcdef")
    loc = Location(3, gen.output_ids[3], TOK.encode("x")[0], "test", "why", output_offset=3)
    c = loc.to_contrast(gen)
    assert c.ids == gen.prompt_ids + gen.output_ids[:3]
    assert c.position == len(c.ids) - 1 and c.target == TOK.encode("d")[0] and c.contrast == TOK.encode("x")[0]
    assert loc.as_dict()["explains"] == "output"


def test_chain_first_success_wins_and_collects_reasons():
    class Miss:
        name = "miss"

        def locate(self, gen, ctx):
            raise NotFound("nothing here")

    class Hit1:
        name = "hit"

        def locate(self, gen, ctx):
            return Location(1, gen.output_ids[1], gen.output_ids[0], self.name, "found")

    class NoContrast:
        name = "where"

        def locate(self, gen, ctx):
            return Location(2, gen.output_ids[2], None, self.name, "here, but no contrast")

    class Boom:
        name = "boom"

        def locate(self, gen, ctx):
            raise LocateError("scorer raised")

    gen, ctx = gen_of("abc"), ctx_for()
    res = Chain([Miss(), Hit1(), Boom()]).locate(gen, ctx)
    assert res.location.locator == "hit" and [a.status for a in res.attempts] == ["not_found", "located"]
    res = Chain([NoContrast(), Hit1()]).locate(gen, ctx)  # a position without a contrast lets the next one try
    assert res.location.locator == "hit" and [a.status for a in res.attempts] == ["no_contrast", "located"]
    res = Chain([NoContrast(), Miss()]).locate(gen, ctx)  # ... and is kept when nothing better comes
    assert res.location.locator == "where" and res.location.contrast is None
    res = Chain([Miss(), Boom(), Hit1()]).locate(gen, ctx)
    assert res.location is None and res.error == "boom: scorer raised"
    res = Chain([Miss()]).locate(gen, ctx)
    assert res.location is None and res.error is None and "miss: nothing here" in res.reason

    class Tried:  # a rollout search that found no fix: what it tried stays in the record
        name = "rollout"

        def locate(self, gen, ctx):
            raise NotFound("no fix", rollouts=[Rollout(1, 7, "x", "...", False, 3)])

    from lm_eval_lrp.harness.locating import _block

    chain = Chain([Tried(), Hit1()])
    res = chain.locate(gen, ctx)
    block = _block(res, chain)
    assert block["locator"] == "hit" and block["rollouts"][0]["forced"] == 7 and not block["rollouts"][0]["verdict"]
    assert "rollouts" not in block["attempts"][0]
    chain = Chain([Tried()])
    block = _block(chain.locate(gen, ctx), chain)
    assert "locator" not in block and block["rollouts"][0]["continuation"] == "..."
    with pytest.raises(ValueError, match="unknown locator 'nope'.*available: arithmetic"):
        Chain.from_names("gold,nope")
    assert Chain.from_names("gold, verifier,rollout").names == ["gold", "verifier", "rollout"]
    assert Chain.default("math").names == ["trajectory+hindsight", "arithmetic", "rollout", "gold"]
    # a reference model given: the default chains use it
    with_ref = {"reference": {"model": object()}}
    assert Chain.default("math", with_ref).names == ["trajectory+hindsight+reference", "arithmetic", "rollout", "gold"]
    assert Chain.default("code", with_ref).names == ["code", "crash+reference", "coverage", "rollout", "gold"]
    assert Chain.default("instructions", with_ref).names == ["instructions", "reference", "rollout"]


def test_earliest_of_several_locators():
    from lm_eval_lrp.config import LRPConfig
    from lm_eval_lrp.locate import Earliest

    def at(name, index, contrast=True):
        class At:
            def locate(self, gen, ctx):
                return Location(index, gen.output_ids[index], gen.output_ids[0] if contrast else None, name, "found")
        At.name = name
        return At()

    class Miss:
        name = "miss"

        def locate(self, gen, ctx):
            raise NotFound("nothing here", rollouts=[Rollout(1, 7, "x", "...", False, 3)])

    gen, ctx = gen_of("abcdefgh"), ctx_for()
    loc = Earliest([at("late", 5), Miss(), at("early", 2), at("tie", 2)]).locate(gen, ctx)
    assert loc.locator == "early" and loc.index == 2 and "earliest of: early at output token 2" in loc.reason
    assert "late at output token 5" in loc.reason
    # a token with a contrast wins over an earlier one without
    loc = Earliest([at("late", 5), at("bare", 1, contrast=False)]).locate(gen, ctx)
    assert loc.locator == "late" and "bare at output token 1 without contrast" in loc.reason
    with pytest.raises(NotFound, match="miss: nothing here; miss: nothing here") as err:
        Earliest([Miss(), Miss()]).locate(gen, ctx)
    assert len(err.value.rollouts) == 2
    res = Chain([Earliest([Miss(), at("b", 3)]), at("next", 1)]).locate(gen, ctx)
    assert res.location.locator == "b" and res.attempts[0].locator == "miss+b"
    assert [r.forced for r in res.location.rollouts] == [7]  # what the one that found nothing tried is kept
    chain = Chain.from_names("verifier+gold,rollout")
    assert chain.names == ["verifier+gold", "rollout"] and isinstance(chain.locators[0], Earliest)
    with pytest.raises(ValueError, match="unknown locator 'nope'"):
        LRPConfig.pop_from({"lrp_locate": "trajectory+nope|gold"})
    assert LRPConfig.pop_from({"lrp_locate": "trajectory+gold|rollout"}).locate == "trajectory+gold,rollout"


# ----------------------------------------------------------------------------- gold


def test_gold_locator_first_divergence(model):
    prompt = TOK.encode("Question: 12?")
    greedy = greedy_output(model, prompt, 6)
    wrong = next(t for t in range(3, 100) if t != greedy[3])
    gold_ids = greedy[:3] + [wrong] + greedy[4:]
    gen = Generation(prompt, greedy, TOK.decode(greedy), gold=TOK.decode(gold_ids))
    loc = make("gold").locate(gen, ctx_for(model))
    # the gold's first 3 tokens are the output's and the greedy token is the output's own: its place is known
    assert (loc.index, loc.target, loc.contrast, loc.output_offset) == (3, greedy[3], wrong, 3)
    assert loc.to_contrast(gen).ids == tuple(prompt + gold_ids[:3])
    other = next(t for t in range(3, 100) if t != greedy[0])
    elsewhere = Generation(prompt, [other] + greedy[1:], TOK.decode([other] + greedy[1:]), gold=TOK.decode(gold_ids))
    assert make("gold").locate(elsewhere, ctx_for(model)).output_offset is None  # not the output's own token
    with pytest.raises(NotFound, match="no gold"):
        make("gold").locate(Generation(prompt, greedy, "x"), ctx_for(model))
    follows = Generation(prompt, greedy, "x", gold=TOK.decode(greedy))
    with pytest.raises(NotFound, match="follows the gold"):
        make("gold").locate(follows, ctx_for(model))


# ----------------------------------------------------------------------------- verifiers


def test_arithmetic_verifier_targets_the_wrong_value_and_picks_the_correct_start():
    output = "3*3*60 = <<3*3*60=180>>180"
    gen = gen_of(output)
    i = output.index("180")
    topk = [[TOK.ids[c] for c in "ab"] + [TOK.ids["x"]]] * len(output)
    topk[i] = [TOK.ids["1"], TOK.ids["9"], TOK.ids["5"]]  # the model's token, then two alternatives
    ctx = ctx_for(object())
    ctx._scans[(gen.prompt_ids, gen.output_ids)] = fixed_scan(topk, len(output))
    loc = make("arithmetic").locate(gen, ctx)
    assert (loc.index, loc.output_offset, loc.target, loc.contrast) == (i, i, TOK.ids["1"], TOK.ids["5"])
    assert "should be 540" in loc.reason and loc.candidates[0].alternatives[2]["token"] == "5"
    # without the model: same token, no contrast
    text_only = make("verifier").locate(gen, ctx_for())
    assert (text_only.index, text_only.contrast) == (i, None)
    with pytest.raises(NotFound, match="no violation"):
        make("arithmetic").locate(gen_of("2 + 2 = 4"), ctx_for())


def test_instruction_verifier_from_an_ifeval_doc():
    doc = {"key": 1, "prompt": "Write without commas.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    output = "yes, sure"
    gen = gen_of(output, doc=doc)
    topk = [[TOK.ids[","], TOK.ids[";"], TOK.ids[" "]] for _ in output]
    ctx = ctx_for(object())
    ctx._scans[(gen.prompt_ids, gen.output_ids)] = fixed_scan(topk, len(output))
    loc = make("verifier").locate(gen, ctx)
    assert (loc.index, loc.target, loc.contrast) == (3, TOK.ids[","], TOK.ids[";"])
    assert "punctuation:no_comma" in loc.reason


def test_a_missing_ending_explains_the_models_stop():
    doc = {"prompt": "p", "instruction_id_list": ["startend:end_checker"], "kwargs": [{"end_phrase": "Bye."}]}
    output = "ok"
    gen = Generation(TOK.encode("Q"), TOK.encode(output) + [TOK.eos_token_id], output, doc=doc)
    topk = [[TOK.ids["o"], TOK.ids["k"], TOK.ids["x"]], [TOK.ids["k"], TOK.ids["x"], TOK.ids["o"]],
            [TOK.eos_token_id, TOK.ids["!"], TOK.ids["B"]]]
    ctx = ctx_for(object())
    ctx._scans[(gen.prompt_ids, gen.output_ids)] = fixed_scan(topk, 3)
    loc = make("instructions").locate(gen, ctx)
    assert (loc.index, loc.target, loc.contrast, loc.output_offset) == (2, TOK.eos_token_id, TOK.ids["B"], 2)


def test_a_word_limit_is_explained_against_ending_even_outside_the_top_k():
    """At the word that reaches a word limit the right move is to stop: the contrast is the model's most probable
    end-of-text token (its log-prob is kept by the scan for every end token), in the top-k or not. White space also
    "stops" visibly, but the model writes on after it: it is the contrast only where no end token is known."""
    doc = {"prompt": "p", "instruction_id_list": ["length_constraints:number_words"],
           "kwargs": [{"num_words": 2, "relation": "less than"}]}
    output = "ab cd ef"
    gen = gen_of(output, doc=doc)
    topk = [[TOK.ids[ch], TOK.ids["x"], TOK.ids["y"]] for ch in output]  # nothing that stops
    ctx = replace(ctx_for(object()), eos_ids=frozenset({TOK.eos_token_id, 1}))
    scan = fixed_scan(topk, len(output))
    scan.watched = {TOK.eos_token_id: torch.full((len(output) + 1,), -3.0), 1: torch.full((len(output) + 1,), -5.0)}
    ctx._scans[(gen.prompt_ids, gen.output_ids)] = scan
    loc = make("instructions").locate(gen, ctx)
    assert (loc.index, loc.target, loc.contrast) == (3, TOK.ids["c"], TOK.eos_token_id)  # word 2 starts at "c"
    assert "(contrast: the end of text)" in loc.reason
    scan.watched[1] = torch.full((len(output) + 1,), -1.0)  # the other end token is the more probable one
    assert make("instructions").locate(gen, ctx).contrast == 1
    # white space among the top-k does not replace the end of text ...
    topk[3] = [TOK.ids["c"], TOK.ids[" "], TOK.ids["x"]]
    spaced = fixed_scan(topk, len(output))
    spaced.watched = scan.watched
    ctx._scans[(gen.prompt_ids, gen.output_ids)] = spaced
    assert make("instructions").locate(gen, ctx).contrast == 1
    # ... and is the contrast where the scan knows no end token; other instructions never fall back to ending
    ctx._scans[(gen.prompt_ids, gen.output_ids)] = fixed_scan(topk, len(output))
    loc = make("instructions").locate(gen, ctx)
    assert loc.contrast == TOK.ids[" "] and "end of text" not in loc.reason
    comma = {"prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    gen = gen_of("a,b", doc=comma)
    scan = fixed_scan([[TOK.ids[ch], TOK.ids[","], TOK.ids[","]] for ch in "a,b"], 3)
    scan.watched = {TOK.eos_token_id: torch.zeros(4)}
    ctx._scans[(gen.prompt_ids, gen.output_ids)] = scan
    assert make("instructions").locate(gen, ctx).contrast is None


def test_an_instruction_violation_is_confirmed_when_its_rollout_passes_the_scorer(model):
    """A verifier's finding is checked as other locators' are: its contrast (and the model's next-best tokens) is
    rolled out there and judged by the task's scorer. Stopping at the word that reaches a word limit passes a scorer
    that counts the words, so the record is confirmed; a scorer that accepts nothing leaves it single."""
    import re

    from lm_eval_lrp.locate.confidence import confidence

    doc = {"prompt": "p", "instruction_id_list": ["length_constraints:number_words"],
           "kwargs": [{"num_words": 2, "relation": "less than"}]}
    gen = gen_of("ab cd ef", doc=doc)
    judged = []

    def fewer_than_two_words(text):
        judged.append(text)
        return len(re.findall(r"\w+", text)) < 2

    budget = Budget(max_rollouts=8, max_new_tokens=4, width=2)
    ctx = ctx_for(model, budget=budget).for_doc(fewer_than_two_words)
    loc = make("instructions").locate(gen, ctx)
    assert (loc.index, loc.target) == (3, TOK.ids["c"])
    assert loc.contrast in ctx.eos_ids  # no alternative of the random model stops: the end of text is the contrast
    assert judged[0] == "ab " and loc.rollouts[0].forced == loc.contrast and loc.rollouts[0].verdict
    assert confidence(loc)[0] == "confirmed"
    nothing = ctx_for(model, budget=budget).for_doc(lambda text: False)
    loc = make("instructions").locate(gen, nothing)
    assert loc.contrast in ctx.eos_ids and len(loc.rollouts) == 2 and not any(r.verdict for r in loc.rollouts)
    assert confidence(loc)[0] == "single"
    # without a budget nothing is rolled out, and the location is the same
    none = ctx_for(model, budget=Budget(max_rollouts=0)).for_doc(fewer_than_two_words)
    loc = make("instructions").locate(gen, none)
    assert loc.index == 3 and loc.rollouts == [] and confidence(loc)[0] == "single"


def test_a_confirming_rollout_after_the_whole_output(model):
    """Where a violation is due where the model stopped, the explained token is the model's own next choice after the
    output; the rollouts force the contrast and the model's other alternatives there and continue greedily."""
    from lm_eval_lrp.locate.counterfactual import confirm

    gen = rollout_case(model)
    n = len(gen.output_ids)
    ctx = ctx_for(model, budget=Budget(max_rollouts=8, max_new_tokens=3, width=2)).for_doc(lambda text: "!" in text)
    ranked = ctx.scan(gen).last_logits.topk(5).indices.tolist()
    contrast = ranked[2]
    fix, rolled = confirm(gen, ctx, n, contrast)
    assert [r.position for r in rolled] == [n, n] and rolled[0].forced == contrast
    assert rolled[1].forced not in (ranked[0], contrast)  # the model's own choice there is not an alternative
    ahead = greedy_fresh(model, [*gen.prompt_ids, *gen.output_ids, contrast], 3)
    assert rolled[0].continuation == TOK.decode([contrast] + ahead)
    assert fix == next((r.forced for r in rolled if r.verdict), None)


def test_code_verifier():
    output = "def f(x):\n    return (x\n"
    loc = make("code").locate(gen_of(output), ctx_for())
    assert loc.output_offset == output.index("return") and loc.contrast is None


# ----------------------------------------------------------------------------- rollout


def test_kv_cache_reuse_gives_the_same_greedy_tokens(model):
    prompt, output = TOK.encode("Sum: 1+2="), TOK.encode("abcdefgh")
    ctx = ctx_for(model)
    gen = Generation(prompt, output, "abcdefgh")
    cache = ctx.scan(gen).cache
    for i in (0, 3, 7):
        forced = [5, 17, 42]
        rows = greedy_after(model, prefix_cache(model, cache, prompt + output, len(prompt) + i, 3), forced, 10)
        for f, row in zip(forced, rows):
            assert row == greedy_fresh(model, prompt + output[:i] + [f], 10)


def test_kv_cache_sliding_window_falls_back_to_recomputing(model):
    gemma = tiny_model("gemma3")
    prompt, output = [5, 6, 7, 8], [9, 10, 11, 12]
    cache = Context(decode=TOK.decode, model=gemma).scan(Generation(prompt, output, "")).cache
    rows = greedy_after(gemma, prefix_cache(gemma, cache, prompt + output, 6, 2), [20, 30], 6)
    assert rows == [greedy_fresh(gemma, prompt + output[:2] + [f], 6) for f in (20, 30)]


class FirstChangeScorer:
    """Correct iff the output first leaves the original at one of ``fixing`` char positions (one char per token)."""

    def __init__(self, original: str, fixing: set[int]):
        self.original, self.fixing, self.calls = original, fixing, 0

    def __call__(self, text: str) -> bool:
        self.calls += 1
        k = next((j for j, (a, b) in enumerate(zip(text, self.original)) if a != b), None)
        return k in self.fixing


def rollout_case(model):
    prompt = TOK.encode("Question: 7*8?")
    output = greedy_output(model, prompt, 12)
    return Generation(prompt, output, TOK.decode(output))


def test_rollout_finds_the_earliest_fixing_position(model, monkeypatch):
    gen = rollout_case(model)
    scorer = FirstChangeScorer(gen.output, {5, 8})
    ctx = ctx_for(model, budget=Budget(max_rollouts=100, max_new_tokens=4, width=2)).for_doc(scorer)
    loc = make("rollout", min_alternative=1e-9).locate(gen, ctx)
    assert loc.index == 5 and loc.output_offset == 5 and not loc.budget_exhausted
    assert loc.target == gen.output_ids[5]
    assert loc.contrast == next(t for t in ctx.scan(gen).topk_ids[5].tolist() if t != gen.output_ids[5])
    assert {r.position for r in loc.rollouts} == set(range(6)) and len(loc.rollouts) == 12 == scorer.calls
    assert all(r.verdict is (r.position == 5) for r in loc.rollouts)
    assert all(len(r.continuation) <= TRUNCATE and r.tokens <= 4 for r in loc.rollouts)
    # a verifier hit at 8 is tried first; earlier forks are then searched and 5 still wins
    monkeypatch.setattr(rollout_module, "verifier_hits", lambda gen, ctx: [Hit(8, "planted", None, "test")])
    loc = make("rollout", min_alternative=1e-9).locate(gen, ctx.for_doc(FirstChangeScorer(gen.output, {5, 8})))
    assert loc.index == 5 and loc.rollouts[0].position == 8 and loc.candidates[0].why == "verifier hit"


def test_rollout_respects_the_budget(model):
    gen = rollout_case(model)
    scorer = FirstChangeScorer(gen.output, {9})
    ctx = ctx_for(model, budget=Budget(max_rollouts=5, max_new_tokens=3, width=2)).for_doc(scorer)
    with pytest.raises(NotFound, match=r"5 rollouts \(budget exhausted\)"):
        make("rollout", min_alternative=1e-9).locate(gen, ctx)
    assert scorer.calls == 5
    # a fix found with budget left over at an earlier verifier hit keeps the flag when forks go untried
    scorer = FirstChangeScorer(gen.output, {2})
    ctx = ctx_for(model, budget=Budget(max_rollouts=3, max_new_tokens=3, width=1)).for_doc(scorer)
    loc = make("rollout", min_alternative=1e-9).locate(gen, ctx)
    assert loc.index == 2 and scorer.calls == 3 and not loc.budget_exhausted


def test_rollout_scorer_error_is_an_error_for_the_document(model):
    gen = rollout_case(model)

    def broken(text):
        raise KeyError("answer")

    ctx = ctx_for(model).for_doc(broken)
    res = Chain.from_names("rollout,gold").locate(gen, ctx)
    assert res.location is None and "scorer raised" in res.error and "KeyError" in res.error
    no_scorer = Chain.from_names("rollout").locate(gen, ctx_for(model))
    assert "no scorer" in no_scorer.reason


# ----------------------------------------------------------------------------- reference


def test_reference_locator(model):
    gen = rollout_case(model)
    ref = tiny_model("llama", seed=3)
    loc = make("reference", model=ref, tokenizer=TOK, evaluated_tokenizer=TOK, gap=0.5).locate(gen, ctx_for(model))
    with torch.no_grad():
        logp = torch.log_softmax(ref(torch.tensor([gen.prompt_ids + gen.output_ids])).logits[0].float(), -1)
    n = len(gen.prompt_ids)
    gaps = [float(logp[n - 1 + j].max() - logp[n - 1 + j, t]) for j, t in enumerate(gen.output_ids)]
    expected = next(j for j, g in enumerate(gaps) if g > 0.5)
    assert loc.index == expected and loc.target == gen.output_ids[expected]
    best = int(logp[n - 1 + expected].argmax())
    own = [t for t in ctx_for(model).scan(gen).topk_ids[expected].tolist() if t != gen.output_ids[expected]]
    # the reference's choice when the evaluated model has it in its top-k, else the evaluated model's best alternative
    assert loc.contrast == (best if best in own else own[0])
    assert ("reference model's choice (in the evaluated model's top-k)" in loc.reason) == (best in own)
    assert "reading the gold solution" not in loc.reason  # no gold: the reference reads the prompt as it is


def test_reference_reads_the_gold_solution_before_the_question(model):
    from lm_eval_lrp.locate.reference import GOLD_NOTE, with_gold

    shots = "Q: 1+1?\nA: 2\n\n"
    prompt = shots + "Q: 7*8?\nA:"
    out = greedy_output(model, TOK.encode(prompt), 10)
    gen = Generation(TOK.encode(prompt), out, TOK.decode(out), gold="7*8=56", doc={"question": "7*8?"})
    ids = with_gold(gen, ctx_for(model))
    # after the few-shot example, at the start of the asked question's line
    assert TOK.decode(ids) == shots + GOLD_NOTE.format(gold="7*8=56") + "Q: 7*8?\nA:"
    no_gold = Generation(gen.prompt_ids, out, gen.output, doc={"question": "7*8?"})
    assert with_gold(no_gold, ctx_for(model)) == gen.prompt_ids
    unknown = Generation(gen.prompt_ids, out, gen.output, gold="56", doc={"question": "not in the prompt"})
    assert TOK.decode(with_gold(unknown, ctx_for(model))).startswith(GOLD_NOTE.format(gold="56") + shots)

    ref = tiny_model("llama", seed=3)
    for informed in (True, False):
        try:
            loc = make("reference", model=ref, gap=0.5, gold_in_context=informed).locate(gen, ctx_for(model))
        except NotFound:
            loc = None
        prefix = list(ids if informed else gen.prompt_ids)
        with torch.no_grad():
            logp = torch.log_softmax(ref(torch.tensor([prefix + list(out)])).logits[0].float(), -1)
        gaps = [float(logp[len(prefix) - 1 + j].max() - logp[len(prefix) - 1 + j, t]) for j, t in enumerate(out)]
        expected = next((j for j, g in enumerate(gaps) if g > 0.5), None)
        assert (loc.index if loc else None) == expected
        if loc:
            assert ("reading the gold solution first" in loc.reason) == informed


def test_hindsight_is_the_evaluated_model_reading_the_gold_first(model):
    prompt = "Q: 7*8?\nA:"
    out = greedy_output(model, TOK.encode(prompt), 10)
    gen = Generation(TOK.encode(prompt), out, TOK.decode(out), gold="7*8=56", doc={"question": "7*8?"})
    # by hand, independently of the reference locator: the model reads the solution note, then the prompt (the
    # question is on the prompt's first line), then its own output; the first output token more than 0.5 nats
    # below its best choice there is the one; its contrast is that choice when it is among the model's own top-10
    informed = TOK.encode("A correct solution, for reference:\n7*8=56\n\n") + TOK.encode(prompt)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([informed + out])).logits[0].float(), -1)
        own = torch.log_softmax(model(torch.tensor([TOK.encode(prompt) + out])).logits[0].float(), -1)
    rows = logp[len(informed) - 1 : len(informed) - 1 + len(out)]
    gaps = [float(rows[j].max() - rows[j, t]) for j, t in enumerate(out)]
    index = next(j for j, g in enumerate(gaps) if g > 0.5)
    best = int(rows[index].argmax())
    own_top = [t for t in own[len(TOK.encode(prompt)) - 1 + index].topk(10).indices.tolist() if t != out[index] and t != 2]
    loc = make("hindsight", gap=0.5).locate(gen, ctx_for(model))
    assert loc.index == index and loc.contrast == (best if best in own_top else own_top[0])
    assert loc.locator == "hindsight" and loc.reason.startswith("the evaluated model (reading the gold solution")
    assert f"{gaps[index]:.2f} nats below" in loc.reason
    # its own greedy output, without the solution: nothing is far below its choice
    with pytest.raises(NotFound, match="no gold solution"):
        make("hindsight").locate(Generation(gen.prompt_ids, out, gen.output), ctx_for(model))
    with pytest.raises(NotFound, match="no model"):
        make("hindsight").locate(gen, ctx_for())
    with pytest.raises(ValueError, match="positive number of nats"):
        make("hindsight", gap=0)


def test_reference_arguments():
    from lm_eval_lrp.config import LRPConfig
    from lm_eval_lrp.model_args import LOAD_KEYS
    from lm_eval_lrp.reference_model import split_reference_args

    load, opts = split_reference_args({"pretrained": "d", "gguf_file": "f", "gap": "4", "gold_in_context": "false"},
                                      LOAD_KEYS)
    assert load == {"pretrained": "d", "gguf_file": "f"} and opts == {"gap": 4.0, "gold_in_context": False}
    with pytest.raises(ValueError, match="unknown argument 'gpa'.*gap, gold_in_context"):
        split_reference_args({"pretrained": "d", "gpa": "4"}, LOAD_KEYS)
    with pytest.raises(ValueError, match="gap='x' must be a positive number"):
        split_reference_args({"pretrained": "d", "gap": "x"}, LOAD_KEYS)
    with pytest.raises(ValueError, match="gold_in_context='maybe' must be true or false"):
        split_reference_args({"pretrained": "d", "gold_in_context": "maybe"}, LOAD_KEYS)
    # named before the evaluation, as the CLI passes it (commas travel as '|')
    with pytest.raises(ValueError, match="unknown argument 'gpa'"):
        LRPConfig.pop_from({"lrp_reference_model": "pretrained=d|gpa=3"})
    with pytest.raises(ValueError, match="no 'pretrained'"):
        LRPConfig.pop_from({"lrp_reference_model": "gguf_file=f.gguf"})
    assert LRPConfig.pop_from({"lrp_reference_model": "pretrained=d|gap=4"}).reference_model == "pretrained=d|gap=4"


def test_reference_with_another_tokenizer_is_refused():
    other = CharTokenizer(TOK.chars[::-1])
    with pytest.raises(ValueError, match="tokenizer differs from the evaluated model's"):
        make("reference", model=object(), tokenizer=other, evaluated_tokenizer=TOK)
    with pytest.raises(ValueError, match="needs a reference model"):
        make("reference")


# ----------------------------------------------------------------------------- cases


def test_cases_file(tmp_path, model):
    path = tmp_path / "cases.jsonl"
    path.write_text('{"task": "t", "doc_id": 0, "offset": 4, "target": "e", "contrast": "z"}\n\n'
                    '{"task": "t", "doc_id": 1, "index": 2}\n')
    loc = make("cases", path=path)
    gen = Generation(TOK.encode("Q"), TOK.encode("abcdefg"), "abcdefg", task="t", doc_id=0)
    found = loc.locate(gen, ctx_for())
    assert (found.index, found.output_offset, found.target, found.contrast) == (4, 4, TOK.ids["e"], TOK.ids["z"])
    assert found.reason.startswith(f"hand annotation {path}:1")
    other = Generation(gen.prompt_ids, gen.output_ids, gen.output, task="t", doc_id=1)
    assert loc.locate(other, ctx_for()).index == 2
    with pytest.raises(NotFound, match="no hand annotation"):
        loc.locate(Generation(gen.prompt_ids, gen.output_ids, gen.output, task="t", doc_id=7), ctx_for())


@pytest.mark.parametrize(
    "line,message",
    [
        ("{not json", "not valid JSON"),
        ('["a"]', "must be a JSON object"),
        ('{"doc_id": 1, "offset": 2}', "'task'"),
        ('{"task": "t", "offset": 2}', "'doc_id' is missing"),
        ('{"task": "t", "doc_id": 1, "offset": 2, "index": 1}', "exactly one of 'offset'"),
        ('{"task": "t", "doc_id": 1, "offset": -2}', "offset must be a non-negative integer"),
        ('{"task": "t", "doc_id": 1, "index": 2, "contrast": 5}', "'contrast' must be a string"),
        ('{"task": "t", "doc_id": 0, "index": 2}', "a second annotation"),
    ],
)
def test_malformed_cases_file_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "cases.jsonl"
    path.write_text('{"task": "t", "doc_id": 0, "index": 1}\n' + line + "\n")
    with pytest.raises(ValueError, match=message) as err:
        make("cases", path=path)
    assert f"{path}:2:" in str(err.value)


# ----------------------------------------------------------------------------- trajectory


def test_trajectory_explains_the_decision_point_of_the_wrong_step():
    question = "Ducks lay 16 eggs. She eats 3 and bakes with 4. How many are left?"
    output = "She has 16 x 3 = 42 eggs."
    gen = gen_of(output, doc={"question": question, "answer": "16-3-4=<<16-3-4=9>>9\n#### 9"})
    topk = [[TOK.ids[ch], TOK.ids["a"], TOK.ids["b"]] for ch in output]  # the model's own token first
    x = output.index("x")
    topk[x] = [TOK.ids["x"], TOK.ids["-"], TOK.ids["+"]]  # the model chose 'x'; '-' is its best alternative
    scan_ = fixed_scan(topk, len(output))
    scan_.topk_logprobs = scan_.topk_logprobs.clone()
    scan_.topk_logprobs[x] = torch.log(torch.tensor([0.55, 0.4, 0.05]))  # the most probable alternative of the step
    ctx = ctx_for(object())
    ctx._scans[(gen.prompt_ids, gen.output_ids)] = scan_
    loc = make("trajectory").locate(gen, ctx)
    assert (loc.index, loc.output_offset, loc.target, loc.contrast) == (x, x, TOK.ids["x"], TOK.ids["-"])
    assert "'16 x 3'" in loc.reason and [c.token for c in loc.candidates][:3] == ["1", "6", " "]
    # a bare wrong answer: its first token; the contrast starts the correct answer when the model ranks one
    gen = gen_of(" 10", doc={"problem": "The LCM of the first ten positive integers?", "solution": "\\boxed{2520}"})
    topk = [[TOK.ids[" "], TOK.ids["a"], TOK.ids["b"]], [TOK.ids["1"], TOK.ids["5"], TOK.ids["2"]],
            [TOK.ids["0"], TOK.ids["a"], TOK.ids["b"]]]
    ctx = ctx_for(object())
    ctx._scans[(gen.prompt_ids, gen.output_ids)] = fixed_scan(topk, 3)
    loc = make("trajectory").locate(gen, ctx)
    assert (loc.index, loc.target, loc.contrast) == (1, TOK.ids["1"], TOK.ids["2"])
    with pytest.raises(NotFound, match="trajectory"):
        make("trajectory").locate(gen_of(" 2520", doc={"problem": "LCM?", "solution": "\\boxed{2520}"}), ctx_for())


def test_trajectory_explains_an_arithmetic_slip_at_the_value():
    """``3 * 68 = 181``: the setup is right and the value is wrong (a slip of arithmetic, not a wrong step), so the
    value is explained, against the alternative that starts the equation's right value (204)."""
    question = "He buys 3 dozen donuts at 68 dollars a dozen. How much does he pay?"
    output = "He pays 3 * 68 = 181 dollars."
    gen = gen_of(output, doc={"question": question, "answer": "3*68=<<3*68=204>>204\n#### 204"})
    topk = [[TOK.ids[ch], TOK.ids["a"], TOK.ids["b"]] for ch in output]
    v = output.index("181")
    topk[v] = [TOK.ids["1"], TOK.ids["3"], TOK.ids["2"]]  # '2' starts 204; the final answer's '2' too, but it is later
    ctx = ctx_for(object())
    ctx._scans[(gen.prompt_ids, gen.output_ids)] = fixed_scan(topk, len(output))
    loc = make("trajectory").locate(gen, ctx)
    assert (loc.index, loc.target, loc.contrast) == (v, TOK.ids["1"], TOK.ids["2"])
    assert "its own equation is wrong" in loc.reason and "'181' should be 204" in loc.reason
    assert "the equation's right value" in loc.reason
    # a wrong equation whose right value is off the trajectory too (16 x 3 = 48 where the gold goes 16 - 3 - 4): the
    # operation is the error, so the setup stays the step (test_the_setup_of_the_first_invented_value)
    from lm_eval_lrp.locate.trajectory import first_step_off

    wrong_op = gen_of("He pays 3 + 68 = 70 dollars.", doc=gen.doc)
    step = first_step_off(wrong_op)
    assert step.correct is None and wrong_op.output[slice(*step.setup)] == "3 + 68"


def _trajectory_close_call(gen, topk, at):
    """``trajectory`` on a hand-made scan where the model's choice at output token ``at`` was a close call (0.5 against
    its best alternative's 0.45): the step's decision point."""
    scan_ = fixed_scan(topk, len(gen.output))
    scan_.topk_logprobs = scan_.topk_logprobs.clone()
    scan_.topk_logprobs[at] = torch.log(torch.tensor([0.5, 0.45, 0.05]))
    ctx = ctx_for(object())
    ctx._scans[(gen.prompt_ids, gen.output_ids)] = scan_
    return make("trajectory").locate(gen, ctx)


def test_trajectory_lists_the_plan_sentence_and_the_setup_as_candidates():
    """A planned operation (``We subtract the discount``) joins the step: the decision point may fall in the plan, and
    the record's candidates say which tokens are the plan's and which the equation's."""
    question = "A book costs 19 dollars after a 5 dollar discount. What did it cost before the discount?"
    output = "We subtract the discount. Then:\n19 - 5 = 14"
    gen = gen_of(output, doc={"question": question, "answer": "19+5=<<19+5=24>>24\n#### 24"})
    topk = [[TOK.ids[ch], TOK.ids["a"], TOK.ids["b"]] for ch in output]
    s = output.index("s")  # 'subtract': the model's best alternative 'a' (add) is most probable here
    topk[s] = [TOK.ids["s"], TOK.ids["a"], TOK.ids["m"]]
    loc = _trajectory_close_call(gen, topk, s)
    assert (loc.index, loc.target, loc.contrast) == (s, TOK.ids["s"], TOK.ids["a"])
    assert "with the plan that names its operation 'We subtract the discount'" in loc.reason
    whys = {c.offset: c.why for c in loc.candidates}
    assert whys[s] == "plan sentence" and set(whys.values()) == {"plan sentence"}  # the span's first 12 tokens
    # the decision point in the setup: the candidates around it, labelled as the setup's
    minus = output.index("-")
    topk[s], topk[minus] = [TOK.ids["s"], TOK.ids["a"], TOK.ids["b"]], [TOK.ids["-"], TOK.ids["+"], TOK.ids["b"]]
    loc = _trajectory_close_call(gen, topk, minus)
    assert (loc.index, loc.contrast) == (minus, TOK.ids["+"])
    whys = {c.offset: c.why for c in loc.candidates}
    assert whys[minus] == "setup token" and whys[output.index("19")] == "setup token"
    assert "plan sentence" in whys.values() and len(whys) == 12


# ----------------------------------------------------------------------------- crash: where the task's tests raise

ROLLING = {"prompt": "def rolling_max(numbers):\n", "entry_point": "rolling_max",
           "test": "def check(f):\n    assert f([]) == []\n    assert f([1, 3, 2]) == [1, 3, 3]\n"}
CRASHES = "    out = []\n    m = numbers[0]\n    for n in numbers:\n        m = max(m, n)\n        out.append(m)\n    return out"


def test_crash_is_the_output_line_where_the_tests_raise():
    from lm_eval_lrp.locate.crash import crash_in_output

    crash = crash_in_output(ROLLING, CRASHES)
    assert (crash.line, CRASHES[crash.offset:crash.end]) == (2, "m = numbers[0]") and crash.error.startswith("IndexError")
    guarded = CRASHES.replace("    m = numbers[0]", "    print('noise')\n    m = numbers[0] if numbers else 0")
    assert crash_in_output(ROLLING, guarded) is None  # passes (and its own printing is not read as an outcome)
    wrong = "    return sorted(numbers)"
    assert crash_in_output(ROLLING, wrong) is None  # the tests' assertion fails: a wrong result, not a crash
    raising_test = {**ROLLING, "test": "def check(f):\n    raise ValueError('in the test')\n"}
    assert crash_in_output(raising_test, wrong) is None  # raised outside the output's lines
    from lm_eval_lrp.locate.types import TimedOut

    with pytest.raises(TimedOut, match="did not finish within 1 s"):  # a timeout is a timeout, not "no crash"
        crash_in_output(ROLLING, "    while True:\n        pass", timeout=1.0)
    assert crash_in_output({"question": "2+2?"}, CRASHES) is None  # not HumanEval-shaped
    mbpp = {"test_list": ["assert first([3, 1]) == 3", "assert first([]) is None"]}
    code = "def first(xs):\n    return xs[0]\n"
    crash = crash_in_output(mbpp, code)  # MBPP: output + its asserts; the IndexError is raised in the output's line 2
    assert (crash.line, code[crash.offset:crash.end]) == (2, "return xs[0]")
    assert crash_in_output(mbpp, "def first(xs):\n    return 3\n") is None  # an assert of the tests fails


def test_crash_locator_explains_the_crashing_line(model):
    gen = gen_of(CRASHES, prompt=ROLLING["prompt"], doc=ROLLING)
    with pytest.raises(NotFound, match="no scorer"):
        make("crash").locate(gen, ctx_for(model))
    verdicts = []
    ctx = ctx_for(model, budget=Budget(max_rollouts=2, max_new_tokens=4, width=2)).for_doc(lambda text: verdicts.append(text) or False)
    loc = make("crash").locate(gen, ctx)
    line = CRASHES.index("m = numbers[0]")
    assert line <= loc.output_offset < line + len("m = numbers[0]") and loc.locator == "crash"
    assert loc.contrast is not None and loc.contrast != loc.target and "IndexError" in loc.reason
    assert len(loc.rollouts) == 2 and len(verdicts) == 2  # its best alternatives were rolled out and judged
    with pytest.raises(NotFound, match="do not crash"):
        make("crash").locate(gen_of("    return []", prompt=ROLLING["prompt"], doc=ROLLING), ctx)
    assert Chain.default("code").names == ["code", "crash", "coverage", "rollout", "gold"]
