"""Wrong arithmetic in a text: ``a op b = c`` with c wrong, chains ``a = b = c``, and gsm8k calculator
annotations ``<<expr=value>>``. Pure text; :func:`arithmetic_errors` returns the wrong values in order of position.

Each side of an equation is evaluated exactly (numbers with ``$``, thousands commas and decimals; + − × ÷ * / x
and parentheses). A side is wrong when it differs from the side before it beyond the precision written (``10/3 =
3.33`` is right). Sides with anything else (units, %, variables) are not judged.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from fractions import Fraction

_NUM = r"\$?\d[\d,]*(?:\.\d+)?"
_TERM = rf"[(\s]*{_NUM}[)\s]*"
_OP = r"[-+*/×÷x]"
_SIDE = rf"{_TERM}(?:{_OP}{_TERM})*"
_CHAIN = re.compile(rf"(?<![\w.<])({_SIDE})(?:=({_SIDE}))+")
_ANNOT = re.compile(r"<<([^<>]*=[^<>]*)>>")
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


@dataclass(frozen=True)
class ArithmeticError_:
    offset: int  # char offset of the wrong value's first digit (or of the side's first character)
    written: str  # the wrong side as written
    correct: str  # the value it should have, formatted like the written one
    equation: str

    @property
    def reason(self) -> str:
        return f"{' '.join(self.equation.split())!r}: {self.written.strip()!r} should be {self.correct}"


def _evaluate(side: str) -> Fraction | None:
    text = side.replace("$", "").replace(",", "").replace("×", "*").replace("÷", "/").replace("x", "*").strip()
    if not text:
        return None
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return None

    def ev(node) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return Fraction(str(node.value))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        raise ValueError("not arithmetic")

    try:
        return ev(tree)
    except (ValueError, ZeroDivisionError):
        return None


def _decimals(side: str) -> int | None:
    """Decimals written in a plain number (None: the side is an expression)."""
    plain = side.replace("$", "").replace(",", "").strip()
    if not re.fullmatch(r"\d+(?:\.\d+)?", plain):
        return None
    return len(plain.split(".")[1]) if "." in plain else 0


def _agrees(expected: Fraction, side: str, value: Fraction) -> bool:
    if expected == value:
        return True
    places = _decimals(side)
    if places is None:
        return False
    return abs(expected - value) <= Fraction(1, 2 * 10**places) + Fraction(1, 10**12)


def _format(value: Fraction, like: str) -> str:
    places = _decimals(like) or 0
    if value.denominator == 1 and places == 0:
        return str(value.numerator)
    return f"{float(value):.{max(places, 2)}f}".rstrip("0").rstrip(".")


def _check_chain(text: str, start: int, end: int, out: list) -> None:
    equation = text[start:end]
    sides, pos = [], start
    for part in equation.split("="):
        sides.append((pos, part))
        pos += len(part) + 1
    prev = None
    for i, (pos, part) in enumerate(sides):
        value = _evaluate(part)
        if value is None:
            return
        if prev is not None and not _agrees(prev, part, value):
            lead = len(part) - len(part.lstrip(" ($"))
            out.append(ArithmeticError_(pos + lead, part, _format(prev, part), equation))
            return
        prev = value


def arithmetic_errors(text: str) -> list[ArithmeticError_]:
    """Every equation (chain) whose value is wrong, by the offset of its first wrong side."""
    found: list[ArithmeticError_] = []
    masked = list(text)
    for m in _ANNOT.finditer(text):
        _check_chain(text, m.start(1), m.end(1), found)
        masked[m.start() : m.end()] = " " * (m.end() - m.start())
    plain = "".join(masked)
    for m in _CHAIN.finditer(plain):
        if "=" in m.group(0) and any(op in m.group(0) for op in "+-*/×÷x"):
            _check_chain(plain, m.start(), m.end(), found)
    return sorted(found, key=lambda e: e.offset)
