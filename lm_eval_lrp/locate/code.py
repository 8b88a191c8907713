"""Python code that does not compile: the first line Python's own ``compile`` rejects. Pure text.

With ``prefix`` (HumanEval: the prompt's signature and docstring) the output is compiled as the body that follows
it, as the task runs it; without, the output's first fenced block when it has one (```python ... ```), else the
whole output. :func:`syntax_error` gives the char offset (into the output) of the first non-blank character of the
offending line, or None when the code compiles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.S)


@dataclass(frozen=True)
class SyntaxProblem:
    offset: int
    line: int  # 1-based line of the output
    message: str

    @property
    def reason(self) -> str:
        return f"line {self.line} of the output does not compile: {self.message}"


def _code_span(output: str) -> tuple[int, str]:
    m = _FENCE.search(output)
    return (m.start(1), m.group(1)) if m else (0, output)


def syntax_error(output: str, prefix: str = "") -> SyntaxProblem | None:
    # after a prefix the task runs prefix + output as they are (HumanEval): a fence there is itself the error
    start, code = (0, output) if prefix else _code_span(output)
    source = prefix + code
    try:
        compile(source, "<output>", "exec", dont_inherit=True)
        return None
    except SyntaxError as err:
        lineno, message = err.lineno or 1, err.msg
    except (ValueError, OverflowError) as err:  # null bytes, literal too large
        lineno, message = 1, str(err)
    prefix_lines = prefix.count("\n")
    line = max(lineno - prefix_lines, 1)  # an error reported inside the prefix belongs to the output's first line
    lines = code.split("\n")
    line = min(line, len(lines))
    before = sum(len(x) + 1 for x in lines[: line - 1])
    text = lines[line - 1]
    col = len(text) - len(text.lstrip())
    return SyntaxProblem(start + before + col, line, message)
