"""A wrong prediction (:class:`Failure`) and what to explain of it (:class:`Case`): which token against which.

Which predictions are wrong is read from lm-eval's logged samples by :mod:`lm_eval_lrp.lmeval.samples`. This module
never runs a model: token ids come from an ``encode_pair(context, continuation)`` function (the harness model's own).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .lrp.target import Contrast


@dataclass
class Failure:
    """One wrong prediction, as plain values (filled from lm-eval's logged sample by :mod:`lm_eval_lrp.lmeval.samples`,
    the only reader of its keys; ``sample`` travels along for the seam's own task view)."""

    task: str
    doc_id: int
    kind: str  # "multiple_choice" | "generate_until"
    sample: dict
    metric: str
    metrics: dict = field(default_factory=dict)
    doc: Any = None
    filter: str | None = None
    doc_hash: str | None = None
    prompt_hash: str | None = None
    requests: list[tuple] = field(default_factory=list)  # per request: (context, continuation or generation settings)
    output: str = ""  # generate_until: the model's generated text
    gen_kwargs: dict = field(default_factory=dict)  # generate_until: until, max_gen_toks, ...
    target: Any = None  # what lm-eval compared the answer with, as logged


@dataclass
class Case:
    """What one attribution explains: Δℓ = ℓ(target) − ℓ(contrast) of the token after ``ids[position]``."""

    ids: list[int] = field(default_factory=list)
    position: int = -1
    target: int | None = None
    contrast: int | None = None
    n_prompt: int = 0  # tokens of the prompt (context) within ids; the rest is the continuation prefix
    prompt: str = ""
    model_output: str = ""
    gold: str = ""
    truncated: int = 0  # tokens cut from the left to fit max_length
    sequence: tuple[list[int], list[int], list[int]] | None = None  # (context, wrong, gold) for the sequence contrast
    skip: str | None = None
    note: str | None = None  # how the explained token was chosen, when it is not the obvious one

    @property
    def explained(self) -> Contrast:
        """What is explained, as the engine takes it."""
        return Contrast(self.ids, self.position, self.target, self.contrast)


def is_wrong(value: float, higher_is_better: bool = True) -> bool:
    return value < 1.0 if higher_is_better else value > 0.0


# --- multiple choice -----------------------------------------------------------------------------------------


def _first_difference(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def _fit(ids: list[int], max_length: int | None) -> tuple[list[int], int]:
    if max_length and len(ids) > max_length:
        cut = len(ids) - max_length
        return ids[cut:], cut
    return ids, 0


def multiple_choice_case(failure: Failure, task, encode_pair, max_length: int | None = None) -> Case:
    args = failure.requests
    n_choices = len(args)
    pred = task.predicted_index(failure.sample, failure.metric)
    # lm-eval logs doc_to_target(doc) as the sample's target: not rendered again
    golds = task.gold_indices(failure.doc, n_choices, *((failure.target,) if failure.target is not None else ()))
    if not golds:
        return Case(skip="no valid gold choice for this document")
    gold = golds[0]
    if pred == gold:
        return Case(skip=f"{failure.metric} marks the document wrong but its prediction equals the gold choice")
    (ctx_p, cont_p), (ctx_g, cont_g) = args[pred][:2], args[gold][:2]
    prompt = ctx_p if ctx_p == ctx_g else ""
    if not ctx_p or not ctx_g:
        return Case(skip="empty context: nothing precedes the answer to explain")
    cp, wp = encode_pair(ctx_p, cont_p)
    cg, wg = encode_pair(ctx_g, cont_g)
    seq_p, seq_g = cp + wp, cg + wg
    if not wp or not wg:
        return Case(skip="empty continuation")
    k = _first_difference(seq_p, seq_g)
    if k >= len(seq_p) or k >= len(seq_g):
        reason = "identical continuations" if seq_p == seq_g else "one continuation is a prefix of the other"
        return Case(skip=f"no valid contrast: {reason}")
    if k == 0:
        return Case(skip="no valid contrast: the sequences differ at their first token")
    ids, cut = _fit(seq_p[:k], max_length)
    sequence = (cp, wp, wg) if cp == cg else None
    return Case(
        ids=ids,
        position=len(ids) - 1,
        target=seq_p[k],
        contrast=seq_g[k],
        n_prompt=max(0, min(len(cp), k) - cut),
        prompt=ctx_p if prompt else ctx_g,
        model_output=cont_p,
        gold=cont_g,
        truncated=cut,
        sequence=sequence,
    )
