"""What one contrastive explanation explains, as a value: :class:`Contrast`.

Δℓ = ℓ(target) − ℓ(contrast), the logits of the next token after ``ids[position]``. ``target`` is the token the
model preferred (the wrong one), ``contrast`` the correct one; ``contrast=None`` explains the single logit ℓ(target).
``target=None`` means "the model's own top token at that position" (resolved after the forward: :meth:`resolve`).
Every engine entry point (explain, layerwise, graph, faithfulness, refine) takes one; it validates itself once and
is the one place where the objective Δℓ is computed from logits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch


@dataclass(frozen=True)
class Contrast:
    ids: tuple[int, ...]
    position: int = -1
    target: int | None = None
    contrast: int | None = None

    def __post_init__(self):
        ids = self.ids
        if isinstance(ids, torch.Tensor):
            if ids.dim() == 2:
                if ids.shape[0] != 1:
                    raise ValueError("a Contrast holds one sequence (batch size 1)")
                ids = ids[0]
            ids = ids.tolist()
        ids = tuple(int(i) for i in ids)
        if not ids:
            raise ValueError("input_ids must be a non-empty 1-D sequence of token ids")
        T = len(ids)
        if not -T <= int(self.position) < T:
            raise IndexError(f"position {self.position} outside a sequence of {T} tokens")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "position", int(self.position) % T)
        for name in ("target", "contrast"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, int(value))
        if self.target is not None and self.target == self.contrast:
            raise ValueError("target and contrast are the same token: nothing to contrast")

    @classmethod
    def of(cls, ids, position: int = -1, target: int | None = None, contrast: int | None = None) -> "Contrast":
        """``ids`` if it is already a Contrast (the other arguments must then be left out), else a new one."""
        if isinstance(ids, Contrast):
            if (position, target, contrast) != (-1, None, None):
                raise TypeError("pass either a Contrast or ids/position/target/contrast, not both")
            return ids
        return cls(ids, position, target, contrast)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def tokens(self) -> list[int]:
        """The explained vocabulary rows: [target] or [target, contrast]."""
        if self.target is None:
            raise ValueError("resolve() the target first")
        return [self.target] + ([self.contrast] if self.contrast is not None else [])

    def check_vocab(self, vocab_size: int) -> "Contrast":
        for name in ("target", "contrast"):
            tok = getattr(self, name)
            if tok is not None and not 0 <= tok < vocab_size:
                raise ValueError(f"{name} token id {tok} outside the vocabulary (size {vocab_size})")
        return self

    def resolve(self, logits: torch.Tensor) -> "Contrast":
        """With ``target=None``: the model's top token from the position's logits ``[V]``."""
        if self.target is not None:
            return self
        top = int(logits.argmax())
        if top == self.contrast:
            raise ValueError("the model's top token is the contrast: nothing to contrast")
        return replace(self, target=top)

    def delta(self, logits: torch.Tensor) -> torch.Tensor:
        """Δℓ from logits over the whole vocabulary (last dim)."""
        value = logits[..., self.target]
        return value - logits[..., self.contrast] if self.contrast is not None else value

    def delta_of(self, chosen: torch.Tensor) -> torch.Tensor:
        """Δℓ from the logits of :attr:`tokens` only (last dim, in that order): the LM head's two rows."""
        return chosen[..., 0] - chosen[..., 1] if self.contrast is not None else chosen[..., 0]

    def with_ids(self, ids: Sequence[int]) -> "Contrast":
        return replace(self, ids=tuple(ids))

    def as_dict(self) -> dict:
        return {"token_ids": list(self.ids), "position": self.position, "target": self.target, "contrast": self.contrast}
