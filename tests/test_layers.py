"""The package imports one way (import-linter's contracts in pyproject.toml), every module sits in a layer, and no
module imports another module's private name."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lm_eval_lrp", "task_hooks")


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _modules(package: str) -> list[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def test_lint_imports_keeps_every_contract():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[test]' (the test extra has import-linter)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([exe, "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_every_module_sits_in_a_layer():
    """A new module must be placed in the layers (pyproject.toml), or the contract would not look at it."""
    package = next(c for c in _contracts() if c["type"] == "layers" and not c.get("containers"))
    layers = [name.strip() for layer in package["layers"] for name in layer.replace("|", ":").split(":")]
    # the package roots and the lm-eval adapter's __init__ (it starts the adapter) sit above every layer
    above = {"lm_eval_lrp", "lm_eval_lrp.__main__", "lm_eval_lrp.lmeval", "task_hooks"}
    loose = [m for p in PACKAGES for m in _modules(p)
             if m not in above and not any(m == layer or m.startswith(layer + ".") for layer in layers)]
    assert not loose, f"modules in no layer: {loose}; add each to [tool.importlinter] layers in pyproject.toml"


def _private_imports(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        ours = node.level > 0 or (node.module or "").split(".")[0] in PACKAGES
        if not ours:
            continue  # a third-party private name (transformers') is that library's business, not a layer question
        for alias in node.names:
            if alias.name.startswith("_") and not alias.name.startswith("__"):
                found.append(f"{path.relative_to(root)}:{node.lineno} imports {alias.name}")
    return found


def _private_attributes(path: Path, root: Path = ROOT) -> list[str]:
    """``mod._name`` where ``mod`` is one of our modules, imported as a module (``from ..lrp import explain``,
    ``import lm_eval_lrp.record as record``): a private name reached around the import."""
    tree = ast.parse(path.read_text(), str(path))
    package = path.relative_to(root).with_suffix("").parts[:-1]
    modules: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update({a.asname or a.name.split(".")[0]: a.name for a in node.names
                            if a.name.split(".")[0] in PACKAGES})
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            if module.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                name = f"{module}.{alias.name}".replace(".", "/")
                if (root / f"{name}.py").is_file() or (root / name / "__init__.py").is_file():
                    modules[alias.asname or alias.name] = name
    return [f"{path.relative_to(root)}:{node.lineno} reads {node.value.id}.{node.attr}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
            and node.attr.startswith("_") and not node.attr.startswith("__")]


def test_no_module_imports_a_private_name():
    files = [p for d in (*PACKAGES, "benchmarks", "scripts", "examples") for p in sorted((ROOT / d).rglob("*.py"))]
    found = [hit for p in files for hit in _private_imports(p) + _private_attributes(p)]
    assert not found, "make the name public in its own module (drop the underscore):\n" + "\n".join(found)


def test_the_private_name_check_sees_one(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from lm_eval_lrp.lrp.rules import _secret\nfrom .x import _y\nfrom transformers import _z\n")
    hits = _private_imports(bad, tmp_path)
    assert [h.rsplit(" ", 1)[-1] for h in hits] == ["_secret", "_y"]
    (tmp_path / "lm_eval_lrp" / "lrp").mkdir(parents=True)
    (tmp_path / "lm_eval_lrp" / "lrp" / "explain.py").write_text("")
    (tmp_path / "lm_eval_lrp" / "record.py").write_text("")
    reader = tmp_path / "lm_eval_lrp" / "reader.py"
    reader.write_text("from .lrp import explain\nimport lm_eval_lrp.record as rec\nfrom .lrp.explain import x\n"
                      "a = explain._head_logits\nb = rec._glob\nc = x._fine\nd = explain.public\n")
    assert [h.rsplit(" ", 1)[-1] for h in _private_attributes(reader, tmp_path)] == ["explain._head_logits", "rec._glob"]


def test_the_layers_contract_refuses_an_upward_import(tmp_path):
    """The contract has teeth: a copy of the package where the engine imports the harness breaks it."""
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[test]'")
    for name in (*PACKAGES, "pyproject.toml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    target = tmp_path / "lm_eval_lrp" / "lrp" / "target.py"
    target.write_text(target.read_text() + "\nfrom ..harness import subject  # noqa: E402,F401\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([exe, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    said = " ".join(done.stdout.split())  # the report wraps long lines
    assert done.returncode != 0
    assert "lm_eval_lrp.lrp is not allowed to import lm_eval_lrp.harness" in said, said[-3000:]
    assert "lm_eval_lrp.lrp.target -> lm_eval_lrp.harness.subject" in said
