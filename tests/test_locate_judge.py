"""The judge locator: steps, the vote, the decision point in the judged step; and judges served by a local
OpenAI-compatible server that the test starts, asked through lm-eval's own ``local-chat-completions`` class."""

from __future__ import annotations

import importlib.util
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from locate_helpers import CharTokenizer

from lm_eval_lrp.locate import Context, Generation, LocateError, NotFound, Scan, make
from lm_eval_lrp.locate.judge import messages_for, parse_judges, steps, vote

TOK = CharTokenizer()
OUTPUT = "She has 16 eggs. She eats 3 x 4 = 12 of them.\nSo she sells 4 eggs."


def gen_of(output=OUTPUT):
    return Generation(TOK.encode("Q:"), TOK.encode(output), output, gold="16 - 3 - 4 = 9",
                      doc={"question": "Ducks lay 16 eggs; she eats 3 and bakes 4. How many does she sell?"})


def test_steps_and_vote():
    spans = steps(OUTPUT)
    assert [OUTPUT[a:b] for a, b in spans] == ["She has 16 eggs.", "She eats 3 x 4 = 12 of them.", "So she sells 4 eggs."]
    assert vote(["2", "Step 2.", "3"], 3) == (2, {2: 2, 3: 1})
    assert vote(["3", "2"], 3)[0] == 2  # a tie goes to the earliest step
    assert vote(["none", "7", ""], 3)[0] is None  # out of range or no number: not a vote
    text = messages_for(gen_of(), spans)[1]["content"]
    assert "[2] She eats 3 x 4 = 12 of them." in text and "16 - 3 - 4 = 9" in text and "bakes 4" in text


def test_judge_explains_the_decision_point_of_the_voted_step():
    gen = gen_of()
    a, b = steps(OUTPUT)[1]
    x = OUTPUT.index("x")
    topk = [[TOK.ids[ch], TOK.ids["a"], TOK.ids["b"]] for ch in OUTPUT]
    topk[x] = [TOK.ids["x"], TOK.ids["-"], TOK.ids["+"]]
    values = torch.log(torch.tensor([0.6, 0.2, 0.1])).expand(len(OUTPUT), -1).clone()
    values[x] = torch.log(torch.tensor([0.5, 0.45, 0.05]))
    ctx = Context.from_tokenizer(TOK, object())
    ctx._scans[(gen.prompt_ids, gen.output_ids)] = Scan(torch.tensor(topk), values, values[:, 0].clone(), None,
                                                        torch.zeros(100))
    loc = make("judge", ask=lambda messages: ["2", "2", "1"]).locate(gen, ctx)
    assert (loc.index, loc.target, loc.contrast, loc.output_offset) == (x, TOK.ids["x"], TOK.ids["-"], x)
    assert a <= loc.output_offset < b and "2 of 3 judges name step 2" in loc.reason
    with pytest.raises(NotFound, match="no judge named a step"):
        make("judge", ask=lambda messages: ["I cannot tell"]).locate(gen, ctx)

    def down(messages):
        raise ConnectionError("refused")

    with pytest.raises(LocateError, match="judges could not be asked.*refused"):
        make("judge", ask=down).locate(gen, ctx)


@pytest.mark.parametrize("spec,message", [("model=a", "needs model= and base_url="), ("base_url", "not key=value"),
                                          (" ; ", "empty")])
def test_malformed_judges_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_judges(spec)
    from lm_eval_lrp.config import LRPConfig

    with pytest.raises(ValueError, match="judge"):
        LRPConfig(locate="judge").check()


def _serve_chat():
    spec = importlib.util.spec_from_file_location("serve_chat", Path(__file__).parents[1] / "benchmarks" / "serve_chat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Judges(_serve_chat().ChatHandler):
    answers = {"strong": "2", "also-strong": "Step 2", "weak": "3"}
    seen: list = []

    def answer(self, body):
        type(self).seen.append(body)
        return self.answers[body["model"]]


def test_judges_on_a_local_server_through_lm_eval():
    from lm_eval_lrp.lmeval.judge import make_judges

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judges)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1/chat/completions"
        ask = make_judges(";".join(f"model={m}|base_url={url}|max_retries=1" for m in ("strong", "also-strong", "weak")))
        loc = make("judge", ask=ask).locate(gen_of(), Context.from_tokenizer(TOK))
    finally:
        server.shutdown()
    assert "2 of 3 judges name step 2" in loc.reason and loc.contrast is None  # no model: no contrast
    assert OUTPUT[loc.output_offset:].startswith("She eats")
    sent = _Judges.seen[-1]
    assert sent["temperature"] == 0 and sent["messages"][0]["role"] == "system"
    assert "[2] She eats 3 x 4 = 12 of them." in sent["messages"][1]["content"]


def test_judges_on_the_command_line_travel_inside_model_args():
    from lm_eval_lrp.cli import translate
    from lm_eval_lrp.config import LRPConfig

    judges = "model=a,base_url=http://h:1/v1/chat/completions;model=b,base_url=http://h:2/v1/chat/completions"
    out = translate(["--model", "hf", "--model_args", "pretrained=x", "--tasks", "gsm8k", "--lrp",
                     "--lrp_locate", "judge,trajectory", "--lrp_judge", judges])
    from lm_eval._cli.utils import key_val_to_dict  # how lm-eval 0.4.13's CLI reads each --model_args value

    kwargs = {}
    for item in out[out.index("--model_args", 4) + 1:]:
        kwargs.update(key_val_to_dict(item))
    cfg = LRPConfig.pop_from(kwargs)
    assert [j["model"] for j in parse_judges(cfg.judge)] == ["a", "b"] and cfg.locate == "judge,trajectory"
    with pytest.raises(SystemExit, match="needs model= and base_url="):
        translate(["--model", "hf", "--tasks", "gsm8k", "--lrp", "--lrp_judge", "model=a"])


def test_the_harness_hands_the_judges_to_the_chain():
    from lm_eval_lrp.config import LRPConfig
    from lm_eval_lrp.harness.locating import Locating
    from lm_eval_lrp.harness.subject import Subject
    from lm_eval_lrp.lmeval.tasks import TaskView
    from task_hooks import HookRegistry

    def ask(messages):
        return ["1"]

    subject = Subject(model=None, tokenizer=TOK, config=LRPConfig(locate="judge,trajectory", judge="model=a,base_url=u"),
                      encode_pair=None, judge=ask)
    locating = Locating(subject, TaskView("gsm8k", "generate_until"), HookRegistry().for_task("gsm8k", "generate_until"))
    assert locating.chain.names == ["judge", "trajectory"] and locating.chain.locators[0].ask is ask
