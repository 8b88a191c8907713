"""Input-relevance heatmaps: the paper's normalisation, colour buckets, and collapsing of long quiet stretches.

Normalisation (paper §4): special tokens (BOS, chat markers — the attention sink) are excluded and shown grey;
every other token's relevance is divided by the largest |R| among them, giving values in [−1, 1]. Positive (red)
supports the wrong (target) token, negative (blue) the correct (contrast) token.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..patterns import special_positions
from .svg import esc


def normalise(relevance: list[float], special: set[int]) -> tuple[list[float | None], float]:
    """Values in [−1, 1] (None for special tokens) and the scale (max |R| over the non-special tokens)."""
    scale = max((abs(r) for i, r in enumerate(relevance) if i not in special and r is not None), default=0.0)
    out: list[float | None] = []
    for i, r in enumerate(relevance):
        if i in special or r is None:
            out.append(None)
        else:
            out.append(r / scale if scale > 0 else 0.0)
    return out, scale


def bucket(v: float | None) -> int:
    """0 … 10: the colour intensity class of a normalised value."""
    if v is None:
        return 0
    return min(10, int(round(abs(v) * 10)))


def top_positions(norm: list[float | None], k: int, sign: int, minimum: float = 0.05) -> list[int]:
    """Indices of the ``k`` strongest tokens of one sign (+1: towards the wrong token, −1: towards the correct one),
    ignoring those below ``minimum`` (normalised): noise is not worth a jump link."""
    cands = [(sign * v, i) for i, v in enumerate(norm) if v is not None and sign * v >= minimum]
    return [i for _, i in sorted(cands, reverse=True)[:k]]


@dataclass
class Heatmap:
    html: str
    scale: float
    special: list[int]
    top_wrong: list[int]
    top_correct: list[int]
    collapsed: int  # tokens hidden in collapsed stretches
    gaps: int


def _show(token: str) -> str:
    if token == "":
        return "∅"
    return token.replace("\r", "␍").replace("\n", "↵\n").replace("\t", "⇥\t")


def render(record: dict, rid: str, *, collapse_min: int = 40, collapse_below: float = 0.1, context: int = 6,
           top_k: int = 8, special_tokens: tuple[str, ...] = ()) -> Heatmap:
    """HTML of a record's tokens coloured by relevance; quiet stretches of ≥ ``collapse_min`` tokens fold away."""
    tokens = [str(t) for t in (record.get("tokens") or [])]
    rel = list(record.get("input_relevance") or [])
    rel += [None] * (len(tokens) - len(rel))
    special = special_positions(record, special_tokens)
    norm, scale = normalise(rel, special)
    wrong = top_positions(norm, top_k, +1, min(collapse_below, 0.05))
    correct = top_positions(norm, top_k, -1, min(collapse_below, 0.05))
    tops = set(wrong) | set(correct)
    n_prompt = record.get("n_prompt_tokens")
    n_prompt = len(tokens) if n_prompt is None else int(n_prompt)
    position = record.get("position")
    position = (len(tokens) - 1) if position is None else int(position) % max(len(tokens), 1)

    protected = [i in special or i in tops or i == position or (norm[i] is not None and abs(norm[i]) >= collapse_below)
                 for i in range(len(tokens))]
    hidden: list[tuple[int, int]] = []  # [start, end) ranges folded away
    i = 0
    while i < len(tokens):
        if protected[i]:
            i += 1
            continue
        j = i
        while j < len(tokens) and not protected[j]:
            j += 1
        if j - i >= max(collapse_min, 2 * context + 1):
            hidden.append((i + context, j - context))
        i = j

    parts: list[str] = []
    starts = {a: b for a, b in hidden}
    i = 0
    while i < len(tokens):
        if i in starts:
            end = starts[i]
            inner = "".join(f"<span>{esc(_show(tokens[k]))}</span>" for k in range(i, end))
            parts.append(f'<details class="gap"><summary>⋯ {end - i} low-relevance tokens (#{i}–#{end - 1})</summary>'
                         f"{inner}</details>")
            i = end
            continue
        v = norm[i]
        classes = []
        if i in special:
            classes.append("sp")
        elif v is not None and bucket(v):
            classes.append(("p" if v > 0 else "n") + str(bucket(v)))
        if i >= n_prompt:
            classes.append("ans")
        if i == position:
            classes.append("pos")
        raw = rel[i]
        value = "special token: excluded from normalisation" if i in special else f"{v:+.2f}"
        title = f"#{i} R={raw:+.4g} ({value})" if raw is not None else f"#{i}"
        attrs = f' class="{" ".join(classes)}"' if classes else ""
        if i in tops:
            attrs += f' id="{rid}-t{i}"'
        parts.append(f'<span{attrs} title="{esc(title)}">{esc(_show(tokens[i]))}</span>')
        i += 1
    html = f'<div class="tokens" data-rid="{esc(rid)}">' + "".join(parts) + "</div>"
    return Heatmap(html, scale, sorted(special), wrong, correct, sum(b - a for a, b in hidden), len(hidden))


def legend() -> str:
    cells = "".join(f'<span class="n{k}">&nbsp;</span>' for k in range(10, 0, -2))
    cells += '<span>&nbsp;</span>' + "".join(f'<span class="p{k}">&nbsp;</span>' for k in range(2, 11, 2))
    return ('<div class="legend"><span class="lab">towards the correct (contrast) token</span>'
            f'<span class="scale">{cells}</span><span class="lab">towards the wrong (target) token</span>'
            '<span class="sp">special</span> <span class="ans">answer so far</span> <span class="pos">explained position</span></div>')
