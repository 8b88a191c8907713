"""A new locator touches one file (its own) plus its test: register it, name it in --lrp_locate, and the config checks
what it declares it needs. This file is the example of docs/locators.md ("Adding a locator")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from locate_helpers import CharTokenizer

from lm_eval_lrp.config import LRPConfig
from lm_eval_lrp.locate import Chain, Context, Generation, Location, NotFound, names, needs_of, register
from lm_eval_lrp.locate.chain import STATUSES, unregister

TOK = CharTokenizer()


class ShoutLocator:
    """Explains the first upper-case letter of the output (an example: an answer that was to be lower case)."""

    name = "shout"
    needs = ("judge",)  # declared for the example: the config then asks for --lrp_judge

    def locate(self, gen: Generation, ctx: Context) -> Location:
        offset = next((i for i, c in enumerate(gen.output) if c.isupper()), None)
        if offset is None:
            raise NotFound("no upper-case letter in the output")
        index = ctx.index_at(gen, offset)
        lower = TOK.encode(gen.output[offset].lower())[0]
        return Location(index, ctx.target_at(gen, index), lower, self.name, "upper case", output_offset=offset)


@pytest.fixture
def shout():
    register("shout", ShoutLocator)
    yield
    unregister("shout")


def located(spec: str, output: str):
    gen = Generation(TOK.encode("say it:"), TOK.encode(output), output)
    return Chain.from_names(spec).locate(gen, Context.from_tokenizer(TOK))


def test_a_registered_locator_runs_in_a_chain(shout):
    assert "shout" in names() and needs_of("shout") == ("judge",)
    result = located("shout,gold", "yes, I do")
    loc = result.location
    assert (loc.locator, loc.index, loc.output_offset) == ("shout", 5, 5)
    assert (TOK.decode([loc.target]), TOK.decode([loc.contrast])) == ("I", "i")
    assert [a.status for a in result.attempts] == ["located"]


def test_nothing_found_is_one_signal_with_a_reason(shout):
    result = located("shout", "all quiet")
    assert result.location is None
    assert [(a.status, a.reason) for a in result.attempts] == [("not_found", "no upper-case letter in the output")]
    assert set(a.status for a in result.attempts) <= set(STATUSES)


def test_the_config_checks_what_a_locator_declares(shout):
    with pytest.raises(ValueError, match=r"lrp_locate names 'shout': give the judges with --lrp_judge"):
        LRPConfig(locate="gold,shout").check()
    LRPConfig(locate="gold,shout", judge="model=m,base_url=http://127.0.0.1:9/v1/chat/completions").check()


def test_the_declarations_of_the_builtin_locators():
    assert needs_of("cases") == ("cases",) and needs_of("reference") == ("reference",)
    assert needs_of("judge") == ("judge",) and needs_of("gold") == ("hook",) and needs_of("trajectory") == ()
    with pytest.raises(ValueError, match="unknown locator 'nope'"):
        needs_of("nope")


def test_a_declaration_outside_the_known_needs_is_refused():
    class Odd(ShoutLocator):
        needs = ("gpu",)

    with pytest.raises(ValueError, match="needs 'gpu', which is none of model, reference, judge, prm, cases, budget, hook"):
        register("odd", Odd)
    assert "odd" not in names()


DOCS = Path(__file__).resolve().parents[1] / "docs" / "locators.md"


def docs_example(marker: str) -> str:
    """The Python block of docs/locators.md that contains ``marker``, as the docs show it."""
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S) if marker in b]
    return block


#: a user's hook file (``--lrp_hooks_path DIR``) that registers its own locator and names it in its tasks' chain: no
#: other file changes. It is docs/locators.md's "A locator from a task hook", word for word.
HOOK_FILE = docs_example("HOOK = QuietHook()")


def test_the_docs_example_locator_runs_as_written():
    """docs/locators.md's ShoutLocator, run as the docs print it: registered, named in a chain, and (without a model,
    so no top-k to pick a contrast from) its token kept as ``no_contrast``."""
    namespace: dict = {}
    exec(compile(docs_example('register("shout", ShoutLocator)'), str(DOCS), "exec"), namespace)  # noqa: S102
    try:
        assert "shout" in names() and needs_of("shout") == ()
        result = located("shout", "yes, I do")
        assert [a.status for a in result.attempts] == ["no_contrast"]
        assert (result.location.locator, result.location.index, result.location.contrast) == ("shout", 5, None)
        assert located("shout", "all quiet").attempts[0].reason == "no upper-case letter in the output"
    finally:
        unregister("shout")


@pytest.fixture
def hook_folder(tmp_path):
    (tmp_path / "quiet.py").write_text(HOOK_FILE)
    yield tmp_path
    unregister("first_capital")


def test_a_locator_registered_by_a_task_hook_is_checked_and_used_by_the_harness(hook_folder):
    from types import SimpleNamespace

    from task_hooks import HookRegistry, load_hooks_from

    from lm_eval_lrp.harness.locating import Locating
    from lm_eval_lrp.harness.subject import Subject

    assert "first_capital" not in names()
    with pytest.raises(ValueError, match=r"lrp_locate names 'first_capital': give the judges with --lrp_judge"):
        LRPConfig(locate="first_capital", hooks_path=str(hook_folder)).check()  # the config loads the hook file
    assert needs_of("first_capital") == ("judge",)

    hook = HookRegistry(load_hooks_from(hook_folder)).for_task("quiet_letters", "generate_until")
    ask = lambda messages: ["yes"]  # noqa: E731 - the run's judges
    subject = Subject(model=None, tokenizer=TOK, config=LRPConfig(), encode_pair=lambda c, x: ([], []), judge=ask)
    locating = Locating(subject, SimpleNamespace(name="quiet_letters"), hook)
    assert (locating.kind, locating.chain.names) == ("instructions", ["first_capital", "gold"])
    assert locating.chain.locators[0].ask is ask  # given by its declared need, not by its name
    gen = Generation(TOK.encode("say it:"), TOK.encode("yes, I do"), "yes, I do")
    loc = locating.chain.locate(gen, locating.ctx).location
    assert (loc.locator, loc.index, TOK.decode([loc.contrast])) == ("first_capital", 5, "i")
