"""The seam: only lm_eval_lrp/lmeval imports lm-eval; the engine, graphs and reports import without it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEAM = ROOT / "lm_eval_lrp" / "lmeval"


def _imports_lm_eval(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(n == "lm_eval" or n.startswith("lm_eval.") for n in names):
            lines.append(node.lineno)
    return lines


def test_only_the_seam_imports_lm_eval():
    offenders = []
    for folder in ("lm_eval_lrp", "task_hooks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if SEAM in path.parents:
                continue
            offenders += [f"{path.relative_to(ROOT)}:{line}" for line in _imports_lm_eval(path)]
    assert not offenders, "lm-eval imported outside lm_eval_lrp/lmeval: " + ", ".join(offenders)


def test_the_scan_sees_an_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from lm_eval.api import model\n    import lm_eval.tasks as t\n")
    assert _imports_lm_eval(bad) == [2, 3]


@pytest.mark.parametrize("module", ["lm_eval_lrp", "lm_eval_lrp.lrp", "lm_eval_lrp.graph", "lm_eval_lrp.report",
                                    "lm_eval_lrp.segments", "lm_eval_lrp.record", "task_hooks"])
def test_importing_leaves_lm_eval_out(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m == 'lm_eval' or m.startswith('lm_eval.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"import {module} imported {out.stdout.strip()}"


def test_install_registers_hf_lrp_once():
    code = ("import lm_eval_lrp, lm_eval.evaluator as ev; lm_eval_lrp.install(); first = ev.evaluate; "
            "lm_eval_lrp.install(); from lm_eval.api.registry import get_model; "
            "print(get_model('hf-lrp').__name__, ev.evaluate is first, getattr(ev.evaluate, '_lm_eval_lrp', False))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["HFLRP", "True", "True"]


#: keys only lm-eval's logged samples have (records and docs never use them)
SAMPLE_ONLY_KEYS = {"arguments", "resps", "filtered_resps", "target_hash"}


def _reads_sample_keys(path: Path) -> list[str]:
    """Where a logged sample's keys are read: ``x["key"]`` / ``x.get("key")`` with an lm-eval-only key, or any key
    read from an expression that names a sample (``sample["doc"]``, ``failure.sample.get("filter")``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            receiver, key = node.value, node.slice
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args):
            receiver, key = node.func.value, node.args[0]
        else:
            continue
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            continue
        if key.value in SAMPLE_ONLY_KEYS or "sample" in ast.unparse(receiver).lower():
            found.append(f"{node.lineno}:{ast.unparse(node)}")
    return found


def test_only_the_seam_reads_logged_samples():
    offenders = []
    for folder in ("lm_eval_lrp", "task_hooks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if SEAM in path.parents:
                continue
            offenders += [f"{path.relative_to(ROOT)}:{hit}" for hit in _reads_sample_keys(path)]
    assert not offenders, ("a logged sample read outside lm_eval_lrp/lmeval (use lm_eval_lrp.lmeval.samples or a "
                           "Failure field): " + ", ".join(offenders))


def test_the_sample_scan_sees_a_read(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("a = sample['arguments'][0][1]\nb = failure.sample.get('filter')\nc = s.get('resps')\n"
                   "d = record.get('doc_hash')\ne = row['doc']\n")
    assert sorted(hit.split(":")[0] for hit in _reads_sample_keys(bad)) == ["1", "2", "3"]
