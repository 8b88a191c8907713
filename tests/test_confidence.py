"""How each generate_until location was established (confirmed / single / fallback), in records, summary and report."""

from __future__ import annotations

import json

from locate_helpers import CharTokenizer
from test_report import attributed, report_text, results_for, write_run

from lm_eval_lrp.locate import Chain, Context, Earliest, Generation, Location, Rollout
from lm_eval_lrp.locate.confidence import confidence, step_of
from lm_eval_lrp.harness.results_block import confidence_counts

TOK = CharTokenizer()
OUTPUT = "He buys 3 boxes.\nSo 3 x 5 = 16 pens.\nThe answer is 16."


def gen() -> Generation:
    return Generation(TOK.encode("Q:"), TOK.encode(OUTPUT), OUTPUT)


def at(name, index, contrast=7, evidence=()):
    class At:
        def locate(self, g, ctx):
            return Location(index, g.output_ids[index], contrast, name, "found", output_offset=index)
    At.name, At.evidence = name, tuple(evidence)
    return At()


def test_levels():
    g = gen()
    fixed = Location(20, g.output_ids[20], 9, "trajectory", "r", output_offset=20,
                     rollouts=[Rollout(20, 8, "x", "...", False), Rollout(20, 9, "y", "...", True)])
    assert confidence(fixed)[0] == "confirmed" and "scorer accept" in confidence(fixed)[1]
    # a rollout that fixed the output elsewhere, or with another token, does not confirm this location
    other = Location(20, g.output_ids[20], 9, "trajectory", "r", output_offset=20,
                     rollouts=[Rollout(21, 9, "y", "...", True), Rollout(20, 8, "x", "...", True)])
    assert confidence(other)[0] == "single"
    assert confidence(Location(3, 1, 2, "gold", "r", continuation=(1, 2, 3)))[0] == "fallback"
    assert confidence(Location(3, 1, 2, "cases", "r", output_offset=3))[0] == "confirmed"
    assert confidence(Location(3, 1, None, "arithmetic", "r", output_offset=3))[0] == "single"


def test_two_locators_on_the_same_step_confirm():
    g, ctx = gen(), Context.from_tokenizer(TOK)
    step2 = OUTPUT.index("So")
    assert step_of(OUTPUT, step2) == step_of(OUTPUT, step2 + 9) == 1 and step_of(OUTPUT, 2) == 0
    traj, prm = at("trajectory", step2 + 9, evidence=["gold"]), at("prm", step2 + 2, evidence=["prm"])
    loc = Earliest([traj, prm]).locate(g, ctx)
    assert loc.locator == "prm" and loc.agreeing == ["trajectory"]
    assert loc.evidence == {"prm": ["prm"], "trajectory": ["gold"]}
    assert confidence(loc) == ("confirmed", "prm, from a process reward model, and trajectory, from the gold solution, "
                                            "name the same step (independent evidence)")
    loc = Earliest([at("trajectory", step2 + 9, evidence=["gold"]), at("prm", 2, evidence=["prm"])]).locate(g, ctx)
    assert loc.agreeing == [] and confidence(loc)[0] == "single"
    res = Chain([at("arithmetic", step2 + 9)]).locate(g, ctx)
    assert confidence(res.location)[0] == "single"


def test_agreement_confirms_only_on_independent_evidence():
    """Two readers of the gold solution both see the first value that leaves it, wherever the error was made: their
    agreement is one piece of evidence, not two. A gold reader and a locator resting on something else confirm."""
    from lm_eval_lrp.locate.chain import evidence_of, make

    g, ctx = gen(), Context.from_tokenizer(TOK)
    step2 = OUTPUT.index("So")
    both_gold = Earliest([at("trajectory", step2 + 9, evidence=["gold"]),
                          at("hindsight", step2 + 2, evidence=["model", "gold"])]).locate(g, ctx)
    assert both_gold.agreeing == ["trajectory"]
    level, why = confidence(both_gold)
    assert level == "single"
    assert why.startswith("hindsight and trajectory name the same step, but not on independent evidence (both read "
                          "the gold solution)")
    for other, evidence in (("reference", ["reference"]), ("prm", ["prm"]), ("arithmetic", ["equations"])):
        loc = Earliest([at("trajectory", step2 + 9, evidence=["gold"]),
                        at(other, step2 + 2, evidence=evidence)]).locate(g, ctx)
        assert confidence(loc)[0] == "confirmed", other
    # a locator that declares no evidence confirms nothing by agreeing
    silent = Earliest([at("trajectory", step2 + 9, evidence=["gold"]), at("mine", step2 + 2)]).locate(g, ctx)
    level, why = confidence(silent)
    assert level == "single" and "mine declares no evidence" in why
    # a rollout from the contrast that the scorer accepts still confirms two gold readers' location
    both_gold.rollouts = [Rollout(both_gold.index, both_gold.contrast, "x", "...", True)]
    assert confidence(both_gold)[0] == "confirmed"
    # the built-in locators' declarations: trajectory, hindsight, gold, a reference given the gold and judges all read
    # the gold solution; a reference without it, the PRM and the checks of the output's own text do not
    assert evidence_of("trajectory") == ("gold",) and set(evidence_of("hindsight")) == {"model", "gold"}
    assert set(evidence_of(make("reference", model=object()))) == {"reference", "gold"}
    assert evidence_of(make("reference", model=object(), gold_in_context=False)) == ("reference",)
    assert "gold" in evidence_of("judge") and "gold" in evidence_of("gold")
    assert evidence_of("prm") == ("prm",) and evidence_of("arithmetic") == ("equations",)
    assert evidence_of("rollout") == ("model", "scorer") and evidence_of("cases") == ("person",)


def test_the_default_math_link_and_the_reference_link_by_evidence():
    """The default math chain's only earliest-of link (trajectory+hindsight) never confirms by agreement; with a
    reference given the gold, neither does the reference agreeing with one of them (all read the gold)."""
    from lm_eval_lrp.locate.chain import DEFAULT_CHAINS, WITH_REFERENCE, evidence_of, split_names

    assert split_names(list(DEFAULT_CHAINS["math"]))[0] == ["trajectory", "hindsight"]
    for chains in (DEFAULT_CHAINS, WITH_REFERENCE):
        assert all("gold" in evidence_of(n) for n in split_names(list(chains["math"]))[0])


def test_a_plugin_declaring_unknown_evidence_is_refused():
    import pytest

    from lm_eval_lrp.locate.chain import register

    class Odd:
        name, evidence = "odd", ("gold standard",)

    with pytest.raises(ValueError, match="declares evidence 'gold standard', which is none of gold, model"):
        register("odd", Odd)


def test_agreement_or_a_fix_at_the_wrong_final_answer_does_not_confirm():
    """Locators that read the gold all see that the final answer is wrong; that is the scorer's own verdict, so
    agreeing there (or forcing the right answer there) confirms no earlier step. A bare answer is the error itself."""
    from lm_eval_lrp.locate.trajectory import TrajectoryLocator, first_step_off

    reasoned = "He buys 3 boxes of 5 pens.\nSo he has 3 x 5 = 15 pens.\nThe answer is 16."
    g = Generation(TOK.encode("Q:"), TOK.encode(reasoned), reasoned, gold="3 x 5 = 15 pens, 1 more: 16 + 1 = 17\n#### 17",
                   doc={"question": "He buys 3 boxes of 5 pens and one more pen. How many pens?"})
    step = first_step_off(g)
    assert step is not None and step.final_answer and reasoned[step.offset:].startswith("16")
    ctx = Context.from_tokenizer(TOK)
    loc = TrajectoryLocator().locate(g, ctx)
    assert loc.final_answer
    answer = reasoned.index("16")
    both = Earliest([TrajectoryLocator(), at("hindsight", answer + 1)]).locate(g, ctx)
    assert both.agreeing and both.final_answer
    assert both.evidence["trajectory"] == ["gold"]  # the real locator's declaration, kept by the earliest-of link
    level, why = confidence(both)
    assert level == "single" and "final answer" in why
    fixed = Location(answer, g.output_ids[answer], 9, "trajectory", "r", output_offset=answer, final_answer=True,
                     rollouts=[Rollout(answer, 9, "y", "...", True)])
    assert confidence(fixed)[0] == "single"
    # an output that is nothing but the wrong answer: the answer is the error, and a fixing rollout confirms it
    bare = Generation(TOK.encode("Q:"), TOK.encode(" 16"), " 16", gold="#### 17", doc={"question": "How many pens?"})
    assert first_step_off(bare).final_answer is False
    assert confidence(Location(1, bare.output_ids[1], 9, "trajectory", "r", output_offset=1,
                               rollouts=[Rollout(1, 9, "y", "...", True)]))[0] == "confirmed"


def test_summary_counts_and_shares():
    blocks = [{"confidence": "confirmed"}, {"confidence": "single"}, {"confidence": "single"}, {"chain": ["gold"]}]
    c = confidence_counts(blocks)
    assert (c["confirmed"], c["single"], c["fallback"], c["none"]) == (1, 2, 0, 1)
    assert c["share"]["single"] == 0.5 and c["share"]["none"] == 0.25


def test_report_shows_shares_filters_and_candidates(tmp_path, capsys):
    from lm_eval_lrp.commands import report as report_cmd

    toks = ["<s>", "Q", ":", " 3", " x"]
    recs = []
    for doc, level in enumerate(["confirmed", "single", "fallback"]):
        r = attributed("tiny_gen", doc, toks, [0.5, 0.1, -0.2, 0.3, 0.4], output="So 3 x 5 = 16")
        r.update(locator="trajectory" if level != "fallback" else "gold", confidence=level, output_offset=5,
                 locate={"chain": ["trajectory", "gold"], "locator": r.get("locator"), "confidence": level,
                         "confidence_why": f"why-{level}", "output_offset": 5, "index": 5,
                         "candidates": [{"index": 5, "offset": 5, "token": "x", "why": "setup token"},
                                        {"index": 9, "offset": 9, "token": "=", "why": "setup token"}]})
        recs.append(r)
    summary = {"tiny_gen": {"accuracy": 0.2, "acc": 0.2, "failures": 3, "attributed": 3, "skipped": {}, "errors": {},
                            "clean_case_rate": 1.0, "median_delta": 2.5, "median_conservation_ratio": 0.9}}
    run = write_run(tmp_path / "run" / "model", {"tiny_gen": recs}, results_for(summary))
    assert report_cmd.main([str(run), "--output", str(run / "r.html")]) == 0
    term = capsys.readouterr().out
    assert "locations: confirmed 1 (33%), single 1 (33%), fallback 1 (33%)" in term
    html = report_text(run / "r.html")
    assert "confirmed 1 (33%), single 1 (33%), fallback 1 (33%), none 0 (0%)" in html
    assert 'id="f-confidence"' in html
    rows = json.loads(html.split('<script type="application/json" id="rows">', 1)[1].split("</script>", 1)[0])
    assert sorted(rows["dicts"]["confidence"]) == ["confirmed", "fallback", "single"]
    assert "why-fallback" in html
    # the fallback's view says nothing confident was found and lists the candidates; the confirmed one does not
    assert html.count("No confident location for this failure") == 1
    assert "output token 9 (character 9)" in html
    assert "stopped at max_gen_toks" not in html


def test_an_output_cut_at_max_gen_toks_says_so(tmp_path):
    """lm-eval stops an output at the task's max_gen_toks: its answer may be missing for that alone, so the record,
    the summary and the report say it, next to the location (which may be right work cut short)."""
    from types import SimpleNamespace

    from lm_eval_lrp.commands import report as report_cmd
    from lm_eval_lrp.harness.results_block import results_block

    assert Generation(TOK.encode("Q:"), TOK.encode("abcdef"), "abcdef", max_gen_toks=6).reached_max_gen_toks
    assert not Generation(TOK.encode("Q:"), TOK.encode("abcde"), "abcde", max_gen_toks=6).reached_max_gen_toks
    assert not Generation(TOK.encode("Q:"), TOK.encode("abcdef"), "abcdef").reached_max_gen_toks  # budget unknown
    recs = []
    for doc, cut in enumerate([256, None, 256]):
        r = attributed("tiny_gen", doc, ["<s>", "Q", ":", " 3"], [0.5, 0.1, -0.2, 0.3], output="So 3 x 5 = 15")
        r["locate"] = {"chain": ["trajectory"], "locator": "trajectory", "confidence": "single", "index": 3,
                       **({"reached_max_gen_toks": cut} if cut else {})}
        recs.append(r)
    task = SimpleNamespace(metric="exact_match", filter="none", n_failures=3, file=None)
    work = SimpleNamespace(tasks={"tiny_gen": task}, notes=[], stopped={}, fallbacks={}, write_seconds={},
                           unwritten=[])
    config = SimpleNamespace(max_length=None, rule="attnlrp", min_delta=1.0)
    block = results_block({"tiny_gen": recs}, work, None, config)
    assert block["tasks"]["tiny_gen"]["locate"]["reached_max_gen_toks"] == 2
    assert any(n.startswith("tiny_gen: 2 of 3 failures stopped at max_gen_toks (256 tokens)")
               and "--gen_kwargs max_gen_toks=512" in n for n in block["notes"])
    summary = {"tiny_gen": {"accuracy": 0.2, "acc": 0.2, "failures": 3, "attributed": 3, "skipped": {}, "errors": {},
                            "clean_case_rate": 1.0, "median_delta": 2.5, "median_conservation_ratio": 0.9}}
    run = write_run(tmp_path / "run" / "model", {"tiny_gen": recs}, results_for(summary))
    assert report_cmd.main([str(run), "--output", str(run / "r.html")]) == 0
    assert report_text(run / "r.html").count("stopped at max_gen_toks (256 tokens)") == 2


def test_records_written_before_confidence_existed_are_read_by_the_same_rules():
    from lm_eval_lrp.report.summary import confidence_of

    rolled = {"locator": "trajectory", "index": 4, "explains": "output",
              "rollouts": [{"position": 4, "forced": 9, "verdict": True}]}
    assert confidence_of({"locate": rolled, "contrast": {"id": 9}}) == "confirmed"
    assert confidence_of({"locate": rolled, "contrast": {"id": 8}}) == "single"
    assert confidence_of({"locate": {"locator": "gold", "explains": "gold", "index": 2}}) == "fallback"
    assert confidence_of({"locate": {"chain": ["gold"], "attempts": []}}) == "none"
    assert confidence_of({"task": "mc"}) == ""


def test_the_rollout_search_does_not_confirm_its_own_finding():
    """``rollout`` places the token at the earliest position where forcing an alternative makes the scorer accept the
    output: that acceptance is how it chose, not a check. On HumanEval it is mostly a rewrite of the whole solution
    from an early token (session 6: 5 such records on Qwen2.5-Coder-0.5B, none inside the hand-marked error), so it is
    `single`; the same accepted rollout at a token another locator chose confirms it."""
    from lm_eval_lrp.report.summary import confidence_of

    fixed = [Rollout(1, 9, " return", "''.join(...)", True)]
    level, why = confidence(Location(1, 5, 9, "rollout", "r", output_offset=1, rollouts=fixed))
    assert level == "single" and "rollout search's finding" in why and "rewrites" in why
    assert confidence(Location(1, 5, 9, "crash", "r", output_offset=1, rollouts=fixed))[0] == "confirmed"
    old = {"locator": "rollout", "index": 1, "explains": "output", "rollouts": [{"position": 1, "forced": 9, "verdict": True}]}
    assert confidence_of({"locate": old, "contrast": {"id": 9}}) == "single"  # a record kept from before labels
