"""``coverage`` (code): the line of the model's code that the failing tests run and the passing tests do not.

Code that compiles, does not crash and returns a wrong result leaves no traceback. The task's tests still say where
to look: each test (a top-level ``assert`` of HumanEval's ``check``, one of MBPP's ``test_list``) is run on its own,
in a separate ``python -I`` process, recording which lines of the output it runs. A line run by every failing test
and by few passing ones is suspect (spectrum-based fault localisation, Ochiai's score ef / √(F · (ef + ep)): ef and
ep the failing and passing tests that run the line, F all failing tests). The earliest of the best-scored lines is
the line explained, at its decision point (the token whose best alternative the model found most probable),
confirmed by a rollout of its best alternatives as ``crash`` does.

It finds nothing, and says why, where the tests cannot tell lines apart: no test passes (every line every failing
test runs scores the same), one test only, or the failing and passing tests run the same lines. Statements of
``check`` that hold no ``assert`` (set-up: imports, helper values) run before each test, in their place.

Model code runs only where the task's own scorer runs it anyway (a context with a scorer), with the scorer's caveat:
a subprocess is not a sandbox.
"""

from __future__ import annotations

import ast
import copy
import json
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from .context import Context
from .crash import explain_line, line_bounds
from .types import Generation, Location, NotFound, TimedOut

MARK = "@@lm-eval-lrp-coverage@@"
UNIT = "__lm_eval_lrp_unit"
RUNNER = f"""
import json, os, signal, sys
job = json.loads(sys.stdin.read())
sys.stdout = sys.stderr = open(os.devnull, "w")  # what the program prints is not kept
class _Late(BaseException):
    pass
def _late(signum, frame):
    raise _Late()
signal.signal(signal.SIGALRM, _late)
ns = {{"__name__": "__main__"}}
result = {{"setup": None, "units": []}}
try:
    exec(compile(job["source"], "<solution>", "exec"), ns)
except BaseException as err:
    result["setup"] = type(err).__name__
if result["setup"] is None:
    for unit in job["units"]:
        seen = set()
        def trace(frame, event, arg):
            if frame.f_code.co_filename != "<solution>":
                return None
            seen.add(frame.f_lineno)
            def lines(frame, event, arg):
                if event == "line":
                    seen.add(frame.f_lineno)
                return lines
            return lines
        error = None
        signal.setitimer(signal.ITIMER_REAL, job["limit"])
        try:
            code = compile(unit, "<unit>", "exec")
            sys.settrace(trace)
            try:
                exec(code, ns)
                if job["entry"] is not None:
                    ns["{UNIT}"](ns[job["entry"]])
            finally:
                sys.settrace(None)
        except _Late:
            error = "timeout"
        except BaseException as err:
            error = type(err).__name__
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        result["units"].append({{"error": error, "lines": sorted(seen)}})
sys.__stdout__.write("\\n{MARK}" + json.dumps(result) + "\\n")
sys.__stdout__.flush()
"""


def humaneval_units(test: str) -> list[str] | None:
    """One program per test of a HumanEval ``check(candidate)``: a function ``UNIT(candidate)`` holding the check's
    statements without an ``assert`` (set-up, in their place) and one statement with an assert; None when ``test``
    defines no ``check`` or does not parse."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return None
    check = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    if check is None:
        return None
    tests = [any(isinstance(x, ast.Assert) for x in ast.walk(s)) for s in check.body]
    units = []
    for k, is_test in enumerate(tests):
        if not is_test:
            continue
        fn = copy.deepcopy(check)
        fn.name, fn.decorator_list = UNIT, []
        fn.body = [copy.deepcopy(s) for i, s in enumerate(check.body) if not tests[i] or i == k]
        units.append(ast.unparse(ast.fix_missing_locations(ast.Module(body=[fn], type_ignores=[]))))
    return units


@dataclass(frozen=True)
class Job:
    prefix: str  # what precedes the output in the program (HumanEval: the prompt)
    source: str  # prefix + output (+ the test's definitions)
    units: list[str]  # one program per test
    entry: str | None  # HumanEval: the function each unit is called with


def job_of(doc: dict, output: str) -> Job | None:
    """The tests of a HumanEval-style (``prompt``, ``test``, ``entry_point``) or MBPP-style (``test_list``) document,
    one program each, around ``output``; None when the doc has neither shape."""
    prompt, test, entry, asserts = doc.get("prompt"), doc.get("test"), doc.get("entry_point"), doc.get("test_list")
    if isinstance(prompt, str) and isinstance(test, str) and isinstance(entry, str) and entry.isidentifier():
        units = humaneval_units(test)
        if units is None:
            return None
        return Job(prompt, f"{prompt}{output}\n{test}\n", units, entry)
    if isinstance(asserts, list) and asserts and all(isinstance(a, str) for a in asserts) and entry is None:
        setup = doc.get("test_setup_code")
        source = output + "\n" + (setup + "\n" if isinstance(setup, str) and setup.strip() else "")
        return Job("", source, [a + "\n" for a in asserts], None)
    return None


def run_units(job: Job, limit: float = 3.0) -> dict | None:
    """Each test of ``job`` run in one separate interpreter ({setup, units: [{error, lines}]}; ``limit`` seconds per
    test); None when the interpreter does not finish."""
    payload = json.dumps({"source": job.source, "units": job.units, "entry": job.entry, "limit": limit})
    with tempfile.TemporaryDirectory() as cwd:
        try:
            proc = subprocess.run([sys.executable, "-I", "-c", RUNNER], input=payload, capture_output=True,
                                  text=True, timeout=limit * (len(job.units) + 1) + 5, cwd=cwd)
        except subprocess.TimeoutExpired:
            return None
    found = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if not found:  # killed from inside (os._exit, a signal)
        return {"setup": f"exit status {proc.returncode}", "units": []}
    return json.loads(found[-1][len(MARK):])


@dataclass(frozen=True)
class Suspect:
    line: int  # 1-based line of the output
    offset: int  # char offset (into the output) of the line's first non-blank character
    end: int  # char offset of the line's end
    score: float  # Ochiai's suspiciousness
    failing: int  # failing tests that run the line
    passing: int  # passing tests that run the line
    tests: int  # all tests
    failed: int  # failing tests
    tied: int  # lines with the same best score


def ochiai(runs: list[tuple[bool, set[int]]]) -> dict[int, float]:
    """Each line's Ochiai score from (failed, lines run) per test: ef / √(F · (ef + ep))."""
    total_failed = sum(failed for failed, _ in runs)
    scores = {}
    for line in set().union(*(lines for _, lines in runs)):
        ef = sum(failed and line in lines for failed, lines in runs)
        ep = sum((not failed) and line in lines for failed, lines in runs)
        scores[line] = ef / math.sqrt(total_failed * (ef + ep)) if ef else 0.0
    return scores


def suspect_line(doc: dict, output: str, limit: float = 3.0) -> Suspect:
    """The earliest of the output's lines with the best Ochiai score over the task's tests; raises NotFound (with the
    reason) where the tests do not single out lines, TimedOut where they do not finish."""
    job = job_of(doc, output)
    if job is None:
        raise NotFound("not a HumanEval- or MBPP-style document with separate tests")
    if len(job.units) < 2:
        raise NotFound(f"{len(job.units)} test: coverage needs a failing and a passing test")
    outcome = run_units(job, limit)
    if outcome is None:
        raise TimedOut("the task's tests did not finish: no coverage to compare")
    if outcome.get("setup"):
        raise NotFound(f"the program does not load ({outcome['setup']}): no test runs")
    first, lines = job.prefix.count("\n"), output.split("\n")
    runs = []
    for unit in outcome["units"]:
        inside = {n - first for n in unit["lines"] if 1 <= n - first <= len(lines) and lines[n - first - 1].strip()}
        runs.append((unit["error"] is not None, inside))
    failed = sum(f for f, _ in runs)
    if not failed:
        raise NotFound(f"all {len(runs)} tests pass when run one by one")
    if failed == len(runs):
        raise NotFound(f"all {len(runs)} tests fail: no passing test sets the lines they run apart")
    scores = ochiai(runs)
    if not scores or max(scores.values()) == 0:
        raise NotFound("the failing tests run no line of the output")
    best = max(scores.values())
    top = sorted(n for n, s in scores.items() if s == best)
    run_by_failing = set().union(*(ls for f, ls in runs if f))
    if set(top) == run_by_failing and len(top) > 1:
        raise NotFound(f"the {failed} failing and {len(runs) - failed} passing tests run the same lines of the output")
    line = top[0]
    return Suspect(line, *line_bounds(output, line), best, sum(f and line in ls for f, ls in runs),
                   sum((not f) and line in ls for f, ls in runs), len(runs), failed, len(top))


class CoverageLocator:
    name = "coverage"
    evidence = ("tests",)

    def __init__(self, limit: float = 3.0):
        self.limit = float(limit)

    def locate(self, gen: Generation, ctx: Context) -> Location:
        if ctx.score is None:
            raise NotFound("no scorer for this task: its tests are not run")
        if not isinstance(gen.doc, dict):
            raise NotFound("not a HumanEval- or MBPP-style document with separate tests")
        if not gen.output_ids:
            raise NotFound("empty output")
        found = suspect_line(gen.doc, gen.output, self.limit)
        tied = f", tied with {found.tied - 1} later line(s)" if found.tied > 1 else ""
        finding = (f"{found.failed} of the task's {found.tests} tests fail; line {found.line} of the output "
                   f"({gen.output[found.offset:found.end][:80]!r}) is run by {found.failing} failing and "
                   f"{found.passing} passing tests (Ochiai {found.score:.2f}, the highest{tied})")
        return explain_line(gen, ctx, self.name, found.offset, found.end, found.line, finding)
