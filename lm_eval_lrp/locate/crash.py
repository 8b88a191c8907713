"""``crash`` (code): the line of the model's own code where the task's tests raise.

A HumanEval-style document (``prompt``, ``test``, ``entry_point``) is run as the task runs it — prompt + output +
test + ``check(entry_point)``; an MBPP one (``test_list``) as output + its asserts — in a separate ``python -I`` process with a wall-clock timeout; when it raises, the
innermost frame of the traceback that lies in the output's lines is the line that crashed (``current_max =
numbers[0]`` raising ``IndexError`` on the empty-list test). The explained token is that line's decision point
(the token whose best alternative the model found most probable; contrast = that alternative), confirmed by rolling
out its best alternatives within ``--lrp_rollouts`` (an alternative the task's scorer accepts becomes the
contrast). A failing assertion of the tests (a wrong result, no crash) or an exception outside the output's lines
locate nothing; tests that time out are recorded as a timeout (status ``timeout`` in ``locate.attempts``); the
chain goes on either way.

Model code runs only where the task's own scorer runs it anyway (a context with a scorer: lm-eval scores these
tasks only under ``--confirm_run_unsafe_code``), with the same caveat: a subprocess is not a sandbox.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from .context import Context
from .counterfactual import confirm
from .span import span_location
from .types import Generation, Location, NotFound, TimedOut

MARK = "@@lm-eval-lrp-crash@@"
RUNNER = f"""
import json, os, sys, traceback
source = sys.stdin.read()
sys.stdout = sys.stderr = open(os.devnull, "w")  # what the program prints is not kept
try:
    exec(compile(source, "<solution>", "exec"), {{"__name__": "__main__"}})
    result = {{"error": None}}
except BaseException as err:
    lines = [f.lineno for f in traceback.extract_tb(err.__traceback__) if f.filename == "<solution>"]
    result = {{"error": type(err).__name__, "message": str(err)[:200], "lines": lines}}
sys.__stdout__.write("\\n{MARK}" + json.dumps(result) + "\\n")
sys.__stdout__.flush()
"""


@dataclass(frozen=True)
class Crash:
    line: int  # 1-based line of the output
    offset: int  # char offset (into the output) of the line's first non-blank character
    end: int  # char offset of the line's end
    error: str  # e.g. "IndexError: list index out of range"


def program_of(doc: dict, output: str) -> tuple[str, str] | None:
    """(prefix, program): what the task's scorer runs for this output — HumanEval: prompt + output + test +
    ``check(entry_point)``; MBPP: output + its ``test_list`` asserts — None when the doc is of neither shape."""
    prompt, test, entry, asserts = doc.get("prompt"), doc.get("test"), doc.get("entry_point"), doc.get("test_list")
    if isinstance(prompt, str) and isinstance(test, str) and isinstance(entry, str) and entry.isidentifier():
        return prompt, f"{prompt}{output}\n{test}\ncheck({entry})\n"
    if isinstance(asserts, list) and asserts and all(isinstance(a, str) for a in asserts) and entry is None:
        return "", output + "\n" + "\n".join(asserts) + "\n"
    return None


def run_tests(program: str, timeout: float = 5.0) -> dict | None:
    """Run ``program`` in a separate interpreter; its outcome ({error, message, lines}), None on a timeout."""
    with tempfile.TemporaryDirectory() as cwd:
        try:
            proc = subprocess.run([sys.executable, "-I", "-c", RUNNER], input=program, capture_output=True, text=True,
                                  timeout=timeout, cwd=cwd)
        except subprocess.TimeoutExpired:
            return None
    found = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if not found:  # killed from inside (os._exit, a signal): no traceback to read
        return {"error": f"exit status {proc.returncode}", "message": "", "lines": []}
    return json.loads(found[-1][len(MARK):])


def crash_in_output(doc: dict, output: str, timeout: float = 5.0) -> Crash | None:
    """Where the task's tests crash inside ``output``; None when they pass, fail an assertion of the tests, or
    raise outside the output's lines. Tests that do not finish within ``timeout`` seconds raise :class:`TimedOut`."""
    shaped = program_of(doc, output)
    if shaped is None:
        return None
    prefix, program = shaped
    outcome = run_tests(program, timeout)
    if outcome is None:
        raise TimedOut(f"the task's tests did not finish within {timeout:g} s: no crashing line to explain")
    if not outcome.get("error"):
        return None
    first, lines = prefix.count("\n"), output.split("\n")
    inside = [n - first for n in outcome.get("lines", []) if 1 <= n - first <= len(lines)]
    if not inside:
        return None
    line = inside[-1]  # the innermost frame in the output
    if not lines[line - 1].strip():
        return None
    error = outcome["error"] + (f": {outcome['message']}" if outcome.get("message") else "")
    return Crash(line, *line_bounds(output, line), error)


def line_bounds(output: str, line: int) -> tuple[int, int]:
    """The char offsets (into ``output``) of the 1-based ``line``'s first non-blank character and of its end."""
    lines = output.split("\n")
    start, text = sum(len(x) + 1 for x in lines[: line - 1]), lines[line - 1]
    return start + len(text) - len(text.lstrip()), start + len(text.rstrip())


def explain_line(gen: Generation, ctx: Context, locator: str, offset: int, end: int, line: int,
                 finding: str) -> Location:
    """A line of the output that the task's tests point at (chars ``offset``..``end``), explained at its decision
    point and confirmed by rolling out its best alternatives; ``finding`` (what the tests showed) opens the reason."""
    positions = [i for i in ctx.tokens_in(gen, offset, end) if i < len(gen.output_ids)]
    if not positions:
        raise NotFound(f"line {line} lies past the output's tokens")
    index, contrast = ctx.decision_point(gen, positions)
    how = "the line's decision point (its most probable alternative)" if ctx.model is not None else "no model"
    fix, rolled = confirm(gen, ctx, index, contrast)
    if fix is not None:
        contrast, how = fix, "the highest-ranked alternative whose rollout the task's scorer accepts"
    return span_location(gen, ctx, locator, positions, index, contrast, f"{finding}; explained: {how}",
                         f"line {line}", rolled)


class CrashLocator:
    name = "crash"
    evidence = ("tests",)

    def __init__(self, timeout: float = 5.0):
        self.timeout = float(timeout)

    def locate(self, gen: Generation, ctx: Context) -> Location:
        if ctx.score is None:
            raise NotFound("no scorer for this task: its tests are not run")
        if not isinstance(gen.doc, dict) or program_of(gen.doc, gen.output) is None:
            raise NotFound("not a HumanEval- or MBPP-style document (prompt, test, entry_point; or test_list)")
        if not gen.output_ids:
            raise NotFound("empty output")
        crash = crash_in_output(gen.doc, gen.output, self.timeout)
        if crash is None:
            raise NotFound("the task's tests do not crash inside the output (they pass, or fail an assertion)")
        finding = (f"the task's tests raise {crash.error} at line {crash.line} of the output "
                   f"({gen.output[crash.offset:crash.end][:80]!r})")
        return explain_line(gen, ctx, self.name, crash.offset, crash.end, crash.line, finding)
