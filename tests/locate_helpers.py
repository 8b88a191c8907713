"""A character-level tokenizer for the tiny test models (vocab 100: ids 0-2 special, one character per other id)."""

from __future__ import annotations

import string

CHARS = string.digits + string.ascii_letters + " .,=+-*/<>$:\"'()\n?!#_[]{}|;&%@^`~\t§"


class CharTokenizer:
    eos_token_id = 2

    def __init__(self, chars: str = CHARS):
        self.chars = chars
        self.ids = {c: i + 3 for i, c in enumerate(chars)}

    def get_vocab(self) -> dict:
        return {**{"<pad>": 0, "<s>": 1, "</s>": 2}, **self.ids}

    def encode(self, text: str) -> list[int]:
        return [self.ids[c] for c in text]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(self.chars[i - 3] if i >= 3 else ("" if skip_special_tokens else f"<{i}>") for i in ids)

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": self.encode(text)}
