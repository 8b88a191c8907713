"""The text of single tokens, ``tokenizer.decode([id])``, decoded once per tokenizer and id.

A record spells out every token it explains, its top-k and its target and contrast; prompts of one task share most of
their tokens (few-shot examples, instructions), so each id is decoded once and looked up afterwards.
"""

from __future__ import annotations

from typing import Iterable
from weakref import WeakKeyDictionary

_DECODED: "WeakKeyDictionary[object, dict[int, str]]" = WeakKeyDictionary()


def token_texts(tokenizer, ids: Iterable[int]) -> list[str]:
    """``[tokenizer.decode([i]) for i in ids]``, each id decoded at most once per tokenizer object."""
    try:
        known = _DECODED.setdefault(tokenizer, {})
    except TypeError:  # an object that cannot be weakly referenced: decoded every time
        return [tokenizer.decode([int(i)]) for i in ids]
    out = []
    for i in ids:
        i = int(i)
        text = known.get(i)
        if text is None:
            text = known[i] = tokenizer.decode([i])
        out.append(text)
    return out
