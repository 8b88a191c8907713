"""The offline IFEval overlay (our prompts, lm-eval's own checkers) and the instruction finders against them."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
for _pkg in ("langdetect", "immutabledict", "nltk"):
    if importlib.util.find_spec(_pkg) is None:
        pytest.skip(reason=f"{_pkg} (lm-eval's ifeval extra: pip install -e '.[test]') is not installed",
                    allow_module_level=True)

from lm_eval_lrp.lmeval.ifeval import NEEDS_PUNKT, failed_instructions, instruction_checks, score  # noqa: E402
from lm_eval_lrp.locate.instructions import FINDERS, violations  # noqa: E402

LOCAL_TASKS = Path(__file__).resolve().parents[1] / "examples" / "local_tasks"


def _make_tasks():
    spec = importlib.util.spec_from_file_location("local_tasks_make_tasks_ifeval", LOCAL_TASKS / "make_tasks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def docs():
    return _make_tasks()._ifeval()["train"]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    from lm_eval.tasks import TaskManager

    out = _make_tasks().write_local_tasks(tmp_path_factory.mktemp("tasks"), ["ifeval"])
    return TaskManager(include_path=str(out)).load(["ifeval"])["tasks"]["ifeval"]


def test_overlay_uses_stock_scoring_on_our_prompts(task, docs):
    assert len(task.eval_docs) == len(docs) == 24
    doc = task.eval_docs[0]
    assert set(doc) == {"key", "prompt", "instruction_id_list", "kwargs"} and task.doc_to_text(doc) == doc["prompt"]
    assert task.process_results(doc, ["A quiet street. Rain on the roofs."])["prompt_level_strict_acc"] is True
    assert task.process_results(doc, ["A quiet street, rain on the roofs."])["prompt_level_strict_acc"] is False


def test_prompts_use_only_locatable_offline_instructions(docs):
    from lm_eval.tasks.ifeval.instructions_registry import INSTRUCTION_DICT

    used = {iid for d in docs for iid in d["instruction_id_list"]}
    assert used <= set(INSTRUCTION_DICT) and used <= set(FINDERS) and not used & set(NEEDS_PUNKT)
    for d in docs:
        assert len(instruction_checks(d)) == len(d["instruction_id_list"])


RESPONSES = {
    1: ["Rain falls on the roofs. People hurry home.", "Rain falls, people hurry home."],
    2: ["light scatters in the air.", "Light scatters in the air."],
    3: ["RIDE FAR. RIDE FREE.", "RIDE far"],
    4: ["A number with two divisors.", " ".join(["word"] * 25)],
    5: [" ".join(["tale"] * 130), "A short tale."],
    6: ["A banana is yellow and soft.", "A cherry is red and sweet."],
    7: ["A steel kettle with a whistle.", "A kettle made of steel."],
    8: ["White snow falls\nquiet fields\nwinter night", "snow snow\nsnow falls"],
    9: ["Work hard. Is there anything else I can help with?", "Work hard. Is there anything else I can help with? Bye."],
    10: ['"Octopuses have three hearts."', "Octopuses have three hearts."],
    11: ["<<Tide>>\nWaves roll in.", "Tide\nWaves roll in."],
    12: ["Dear Sam, it was fun.\nP.S. See you soon.", "Dear Sam, it was fun."],
    13: ['{"planets": ["Mercury", "Venus"]}', '{"planets": ["Mercury", "Venus"],}'],
    14: ["* Fix leaks\n* Short showers\n* Full loads", "* Fix leaks\n* Short showers\n* Full loads\n* Rain barrels"],
    15: ["Mix flour and water.\n***\nBake it.", "Mix.\n***\nKnead.\n***\nBake."],
    16: ["Name three uses of a paperclip. Hold paper.", "Three uses: hold paper."],
    17: ["A cat naps.", "The eager kitten sees seven geese."],
    22: ["It shines at night. That is all.", "It shines at night."],
}


@pytest.mark.parametrize("key", sorted(RESPONSES))
def test_finders_agree_with_lm_evals_checkers(docs, key):
    """A located violation exactly when lm-eval's checker says the instruction is broken."""
    doc = next(d for d in docs if d["key"] == key)
    good, bad = RESPONSES[key]
    for response, ok in ((good, True), (bad, False)):
        failed = failed_instructions(doc, response)
        found = violations(response, doc["instruction_id_list"], doc["kwargs"])
        assert score(doc)(response) is ok and (not failed) is ok, (response, failed)
        assert sorted(v.instruction for v in found) == sorted(failed), (response, found)
        for v in found:
            assert 0 <= v.offset <= len(response)


def test_task_scorer_is_the_tasks_own_verdict(task):
    from lm_eval_lrp.lmeval.scoring import stop_sequences, task_scorer

    doc = next(d for d in task.eval_docs if d["key"] == 18)  # no commas and fewer than 40 words
    scorer = task_scorer(task, doc)
    assert scorer("A girl meets a wolf. A hunter saves her.") is True
    assert scorer("A girl, a wolf and a hunter.") is False
    assert scorer(" ".join(["wolf"] * 45)) is False
    assert task_scorer(task, doc, metric="inst_level_strict_acc")("A girl, a wolf.") is False
    with pytest.raises(ValueError, match="filter 'nope'"):
        task_scorer(task, doc, filter_name="nope")
    assert stop_sequences(task) == []
