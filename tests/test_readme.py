"""The README as a newcomer reads it: short, and every command, option, file and Python name it gives exists as written
(the long example job itself is CI's and the GPU check's business; here its script parses and its knobs are real)."""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SUBCOMMANDS = ("report", "compare", "explain", "graph")


def _options(parser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}  # noqa: SLF001 - argparse's own list


def _commands(program: str) -> list[list[str]]:
    """Every ``program ...`` command the README gives: code blocks, indented lines and inline code."""
    lines = re.findall(r"^(?: {4}|)(" + re.escape(program) + r" [^\n`]*)$", README, re.M)
    lines += re.findall(r"`(" + re.escape(program) + r" [^`]*)`", README)
    return [shlex.split(line.replace("<", "'<").replace(">", ">'")) for line in lines]


def test_the_readme_is_short():
    assert len(README.splitlines()) <= 150


def test_every_file_the_readme_names_exists():
    links = re.findall(r"\]\(([^)#]+)\)", README)
    paths = re.findall(r"`((?:\.ci|docs|examples|scripts|benchmarks)/[\w./-]+)`", README)
    paths += re.findall(r"(?:bash|python) ((?:examples|scripts)/[\w./-]+)", README)
    named = [p for p in links + paths if not p.startswith("http")]
    assert len(named) >= 10
    assert [p for p in named if not (ROOT / p).exists()] == []


def test_the_install_commands_name_real_extras():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = {e for group in re.findall(r"pip install -e '\.\[([\w,]+)\]'", README) for e in group.split(",")}
    assert named and named <= extras, named - extras


def test_the_example_job_parses_and_reads_the_settings_the_readme_names():
    script = ROOT / "examples" / "main_job.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    for knob in ("LIMIT", "GSM8K_LIMIT", "OUT"):
        assert f"`{knob}`" in README and "${" + knob + ":-" in script.read_text()
    assert "runs/main/SmolLM2-135M-Instruct" in README and "SmolLM2-135M-Instruct" in script.read_text()


def test_every_lrp_option_in_the_readme_is_the_cli_s_and_back():
    from lm_eval_lrp.cli import lrp_parser

    cli = {o for o in _options(lrp_parser()) if o.startswith("--lrp")}
    readme = set(re.findall(r"(--lrp\w*)", README))
    assert readme == cli, (readme - cli, cli - readme)


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_each_sub_command_in_the_readme_takes_its_options(sub):
    module = importlib.import_module(f"lm_eval_lrp.commands.{sub}")
    known = _options(module.parser())
    given = [c for c in _commands("lm-eval-lrp") if c[1:2] == [sub]]
    assert given, f"the README names no `lm-eval-lrp {sub}`"
    for command in given:
        unknown = [w for w in command[2:] if w.startswith("--") and w not in known]
        assert not unknown, f"{' '.join(command)}: {unknown} not among {sorted(known)}"


def test_the_main_command_s_options_are_lm_eval_s_or_ours():
    """``lm-eval-lrp --model hf ...`` as the README writes it: every option is in ``lm-eval-lrp --help`` (ours, then
    lm_eval's own)."""
    done = subprocess.run([sys.executable, "-m", "lm_eval_lrp", "--help"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    known = set(re.findall(r"(?<![\w-])(--\w+)", done.stdout))
    given = {w for c in _commands("lm-eval-lrp") if c[1:2] not in ([s] for s in SUBCOMMANDS) for w in c[1:]
             if w.startswith("--")}
    assert {"--model", "--model_args", "--tasks", "--output_path", "--log_samples", "--lrp"} <= given
    assert given <= known, given - known


def test_the_report_command_parses_as_written():
    from lm_eval_lrp.commands.report import parser

    (command,) = [c for c in _commands("lm-eval-lrp") if c[1:2] == ["report"] and len(c) == 3]
    assert parser().parse_args(command[2:]).run_dir == "runs/main/SmolLM2-135M-Instruct"


def test_the_python_names_in_the_readme_exist():
    import lm_eval_lrp
    from lm_eval_lrp.lrp import explain

    assert callable(lm_eval_lrp.install) and callable(lm_eval_lrp.load_run)
    assert list(__import__("inspect").signature(explain).parameters)[:5] == [
        "model", "input_ids", "position", "target", "contrast"]
