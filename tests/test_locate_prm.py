"""The ``prm`` locator (a process reward model through transformers) and local transformers judges: tiny random models
of the right shape built from configs, fixed texts, and one end-to-end CLI run."""

from __future__ import annotations

import pytest
import torch
from locate_helpers import CharTokenizer

import tiny_harness as th
from lm_eval_lrp.locate import Context, Generation, NotFound, Scan, make
from lm_eval_lrp.locate.judge import steps
from lm_eval_lrp.locate.prm import ProcessRewardModel, first_low, load_prm

TOK = CharTokenizer()
OUTPUT = "She has 16 eggs. She eats 3 x 4 = 12 of them.\nSo she sells 4 eggs."


def build_prm(root):
    """A tiny random PRM: a Qwen2 token classifier with two labels and the ``<extra_0>`` step separator."""
    import transformers as T

    out = root / "prm"
    if out.exists():
        return out
    tok = T.AutoTokenizer.from_pretrained(th.build(root))  # SmolLM2's tokenizer, saved beside the tiny chat model
    tok.add_special_tokens({"additional_special_tokens": ["<extra_0>"]})
    torch.manual_seed(0)
    cfg = T.Qwen2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        intermediate_size=64, vocab_size=len(tok), max_position_embeddings=1024, num_labels=2,
                        pad_token_id=tok.eos_token_id, initializer_range=0.5)
    T.Qwen2ForTokenClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("prm")


@pytest.fixture(scope="module")
def prm(root):
    model, threshold = load_prm({"pretrained": str(build_prm(root)), "batch_size": "2", "threshold": "0.4"})
    assert threshold == 0.4
    return model


def test_scores_at_each_separator_batched_like_one_by_one(prm):
    solutions = [("What is 2 + 3?", ["2 + 3 = 5.", "The answer is 5."]),
                 ("A long problem " * 8, ["Step one is long " * 4, "two", "three."]),
                 ("Q", ["only step"])]
    batched = prm.score(solutions)
    assert [len(s) for s in batched] == [2, 3, 1] and all(0 < x < 1 for s in batched for x in s)
    for sol, got in zip(solutions, batched):
        ids = prm.tokenizer(prm.text(*sol), add_special_tokens=False)["input_ids"]
        assert "<|im_start|>user" in prm.text(*sol) and ids.count(prm.step_id) == len(sol[1])
        with torch.no_grad():
            probs = prm.model(input_ids=torch.tensor([ids])).logits[0].softmax(-1)[:, 1]
        want = [float(probs[i]) for i, t in enumerate(ids) if t == prm.step_id]
        assert got == pytest.approx(want, abs=1e-5)  # right padding leaves every step's score unchanged
    assert first_low([0.9, 0.3, 0.1], 0.5) == 1 and first_low([0.9, 0.8], 0.5) is None


def test_a_separator_that_is_not_one_token_is_refused(prm):
    with pytest.raises(ValueError, match="not one token"):
        ProcessRewardModel(prm.model, prm.tokenizer, step_token="<no such separator>")


class FixedPRM:
    """Scores given per step (the locator's logic, apart from any model)."""

    def __init__(self, scores):
        self.scores, self.asked = scores, []

    def score(self, solutions):
        self.asked += list(solutions)
        return [list(self.scores) for _ in solutions]


def test_the_first_low_step_is_explained_at_its_decision_point():
    gen = Generation(TOK.encode("Q:"), TOK.encode(OUTPUT), OUTPUT,
                     doc={"question": "Ducks lay 16 eggs; she eats 3 and bakes 4. How many does she sell?"})
    a, b = steps(OUTPUT)[1]
    x = OUTPUT.index("x")
    topk = [[TOK.ids[ch], TOK.ids["a"], TOK.ids["b"]] for ch in OUTPUT]
    topk[x] = [TOK.ids["x"], TOK.ids["-"], TOK.ids["+"]]
    values = torch.log(torch.tensor([0.6, 0.2, 0.1])).expand(len(OUTPUT), -1).clone()
    values[x] = torch.log(torch.tensor([0.5, 0.45, 0.05]))
    ctx = Context.from_tokenizer(TOK, object())
    ctx._scans[(gen.prompt_ids, gen.output_ids)] = Scan(torch.tensor(topk), values, values[:, 0].clone(), None,
                                                        torch.zeros(100))
    fixed = FixedPRM([0.9, 0.2, 0.1])
    loc = make("prm", prm=fixed, threshold=0.5).locate(gen, ctx)
    assert fixed.asked[0][0].startswith("Ducks lay") and fixed.asked[0][1][1] == OUTPUT[a:b]
    assert (loc.index, loc.target, loc.contrast, loc.output_offset) == (x, TOK.ids["x"], TOK.ids["-"], x)
    assert "step 2" in loc.reason and "0.20 < 0.5" in loc.reason
    with pytest.raises(NotFound, match="every step at least 0.5"):
        make("prm", prm=FixedPRM([0.9, 0.8, 0.7]), threshold=0.5).locate(gen, ctx)
    with pytest.raises(ValueError, match="between 0 and 1"):
        make("prm", prm=fixed, threshold=1.5)
    # a task's failures are scored in one batch ahead; locating then asks the PRM nothing more
    calls = []

    class Counting(FixedPRM):
        def score(self, solutions):
            calls.append(len(solutions))
            return super().score(solutions)

    other = Generation(TOK.encode("Q:"), TOK.encode("One step.\nTwo steps."), "One step.\nTwo steps.", doc={"question": "q"})
    loc = make("prm", prm=Counting([0.9, 0.2, 0.1]), threshold=0.5)
    loc.prefetch([gen, other, gen])
    assert calls == [2]
    assert loc.locate(gen, ctx).index == x and calls == [2]
    assert loc.locate(gen, ctx).index == x and calls == [2, 1]  # taken once: a second time asks again


def test_local_judge_answers_greedily_through_the_chat_template(root):
    from transformers import AutoModelForCausalLM

    from lm_eval_lrp.locate.judge import messages_for, parse_judges
    from lm_eval_lrp.locate.local_judge import load_local_judge

    path = th.build(root)
    judge = load_local_judge({"pretrained": str(path), "max_gen_toks": "4"})
    gen = Generation(TOK.encode("Q:"), TOK.encode(OUTPUT), OUTPUT, doc={"question": "How many eggs?"})
    messages = messages_for(gen, steps(OUTPUT))
    ids = judge.prompt_ids(messages)
    text = judge.tokenizer.decode(ids)
    assert "<|im_start|>system" in text and "[2] She eats 3 x 4 = 12 of them." in text and text.endswith("assistant\n")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        want = model.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False, pad_token_id=0)[0, len(ids):]
    assert judge(messages) == judge.tokenizer.decode(want.tolist(), skip_special_tokens=True)
    assert parse_judges(f"pretrained={path};model=m,base_url=http://h/v1") == [
        {"pretrained": str(path)}, {"model": "m", "base_url": "http://h/v1"}]
    with pytest.raises(ValueError, match="both a local model"):
        parse_judges("pretrained=x,base_url=http://h")
    with pytest.raises(ValueError, match="unknown argument 'temprature'"):
        load_local_judge({"pretrained": str(path), "temprature": "0"})


@pytest.mark.slow
def test_prm_and_local_judges_end_to_end(root):
    """A CLI run: the PRM and two local judges (voting) run in one earliest-of link on every failure."""
    prm_path, judge = build_prm(root), th.build(root)
    tasks = th.write_tasks(root)
    out = root / "run"
    proc = th.run_cli(["--model", "hf", "--model_args", f"pretrained={judge}", "--include_path", str(tasks),
                       "--tasks", "tiny_gen", "--device", "cpu", "--output_path", str(out), "--lrp",
                       "--lrp_min_delta", "0", "--lrp_locate", "prm+judge,gold",
                       "--lrp_prm", f"pretrained={prm_path},threshold=0.99,batch_size=4",
                       "--lrp_judge", f"pretrained={judge};pretrained={judge},max_gen_toks=3"], root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = th.records(out, "tiny_gen")
    assert recs and all(r["locate"]["chain"] == ["prm+judge", "gold"] for r in recs)
    by_prm = [r for r in recs if r["locate"].get("locator") == "prm"]
    assert by_prm, [r["locate"]["attempts"] for r in recs]  # threshold 0.99: a random PRM's first step is low
    for r in by_prm:
        assert "the PRM scores step 1" in r["locate"]["reason"] and r["confidence"] in ("confirmed", "single")
    # both judges were asked on every failure: their answers (or why none named a step) are in the record
    assert all("judge" in r["locate"]["reason"] or "judge" in str(r["locate"]["attempts"]) for r in recs)


def test_prm_options_are_checked_before_the_evaluation():
    from lm_eval_lrp.cli import translate

    args = translate(["--model", "hf", "--lrp", "--lrp_prm", "pretrained=/x,threshold=0.3", "--lrp_locate", "prm,gold"])
    assert "lrp_prm=pretrained=/x|threshold=0.3" in args and "lrp_locate=prm|gold" in args
    with pytest.raises(SystemExit, match="names 'prm': give the process reward model with --lrp_prm"):
        translate(["--model", "hf", "--lrp", "--lrp_locate", "prm"])
    with pytest.raises(SystemExit, match="lrp_prm: give the process reward model as pretrained=PATH"):
        translate(["--model", "hf", "--lrp", "--lrp_prm", "threshold=0.2"])
    with pytest.raises(SystemExit, match="threshold=2 must lie between 0 and 1"):
        translate(["--model", "hf", "--lrp", "--lrp_prm", "pretrained=/x,threshold=2"])


def test_a_given_prm_goes_first_in_the_default_math_chain():
    from lm_eval_lrp.locate import DEFAULT_CHAINS, Chain

    options = {"prm": {"prm": FixedPRM([0.1]), "threshold": 0.5}}
    assert Chain.default("math", options).names == ["prm", *DEFAULT_CHAINS["math"]]
    assert Chain.default("code", options).names == list(DEFAULT_CHAINS["code"])  # PRMs score math solutions
    assert Chain.default("math").names == list(DEFAULT_CHAINS["math"])
