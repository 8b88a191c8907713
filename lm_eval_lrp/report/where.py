"""Where the error is, on the page: the model output with exactly the explained token's characters marked and the
step (line or sentence) it belongs to marked lighter. White space and special tokens are shown visibly.
"""

from __future__ import annotations

import re

from markupsafe import Markup

from .svg import esc

_VISIBLE = {"\n": "⏎", "\r": "␍", "\t": "⇥", " ": "␣"}
_SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z\\$(\[])")


def visible(token: str | None) -> str:
    """A token as a chip shows it: white space as symbols (``⏎``, ``␣``, ``⇥``), an empty token as ``∅``."""
    if token is None:
        return "–"
    if token == "":
        return "∅"
    if token.strip():
        return token.replace("\n", "⏎").replace("\t", "⇥")
    return "".join(_VISIBLE.get(ch, ch) for ch in token)


def step_span(text: str, start: int, end: int) -> tuple[int, int]:
    """[a, b) of the step holding ``text[start:end]``: its line, cut further after a sentence end."""
    a = text.rfind("\n", 0, start) + 1
    b = text.find("\n", max(end, start + 1) if end > start else start)
    b = len(text) if b < 0 else b
    for m in _SENTENCE_END.finditer(text, a, b):
        if m.end() <= start:
            a = m.end()
        elif m.start() >= end:
            b = m.end()
            break
    while a < start and text[a].isspace():  # a step starts at its first visible character
        a += 1
    return a, max(b, end)


def _mark(token: str) -> str:
    """The marked characters: the token's own text, white space made visible (a line break keeps its break)."""
    out = []
    for ch in token:
        symbol = _VISIBLE.get(ch)
        out.append(esc(ch) if symbol is None or ch == " " and token.strip() else esc(symbol) + ("\n" if ch == "\n" else ""))
    return "".join(out)


def highlight(output: str, offset: int, token: str | None, special: bool = False, window: int = 400) -> Markup:
    """``output`` with ``output[offset:offset + len(token)]`` marked (class ``tok``) inside its step (class ``step``).

    A special token (``<|im_end|>``) that is not part of the text is shown by name at ``offset``. ``token`` that does
    not match the text there marks the one character at ``offset`` (never a fixed stretch)."""
    offset = max(0, min(int(offset), len(output)))
    token = token or ""
    if special or not token or not output.startswith(token, offset):
        shown = token if special and token else ""
        end = offset if special else min(offset + 1, len(output))
        own = esc(shown) if special else _mark(output[offset:end])
    else:
        end = offset + len(token)
        own = _mark(token)
    a, b = step_span(output, offset, end)
    lo, hi = max(0, a - window), min(len(output), b + window)
    parts = [("…" if lo > 0 else "") + esc(output[lo:a]), '<span class="step">', esc(output[a:offset]),
             f'<mark class="tok">{own}</mark>', esc(output[end:b]), "</span>", esc(output[b:hi]) + ("…" if hi < len(output) else "")]
    return Markup("".join(parts))
