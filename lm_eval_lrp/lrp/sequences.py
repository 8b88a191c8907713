"""Sequence-level contrasts: whole continuations' log-likelihoods, as lm-eval scores multiple-choice answers.

* :func:`explain_sequences` — two continuations after one shared context: Σ log p(wrong) − Σ log p(gold).
* :func:`explain_context_pair` — one continuation after two contexts (lm-eval's multiple-input tasks, e.g.
  winogrande: the choices are the contexts): log p(cont | predicted context) − log p(cont | gold context).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .dispatch import input_device
from .explain import LRPForward
from .model_io import as_ids


@dataclass
class SequenceExplanation:
    """Sequence-level contrast: relevance of the shared context for Σ log p(wrong) − Σ log p(gold)."""

    context_ids: list[int]
    wrong_ids: list[int]
    gold_ids: list[int]
    logprob_wrong: float
    logprob_gold: float
    delta: float
    context_relevance: torch.Tensor  # [len(context_ids)]
    rule: str

    @property
    def finite(self) -> bool:
        return bool(torch.isfinite(self.context_relevance).all())


@dataclass
class ContextPairExplanation:
    """One continuation scored after two contexts. ``wrong_relevance``: relevance of the predicted context +
    continuation for log p(cont | predicted); ``gold_relevance``: of the gold context + continuation for
    log p(cont | gold). Δ = the difference of the two log-likelihoods (> 0: the predicted context scored higher)."""

    wrong_ids: list[int]
    n_wrong_context: int
    gold_ids: list[int]
    n_gold_context: int
    logprob_wrong: float
    logprob_gold: float
    delta: float
    wrong_relevance: torch.Tensor
    gold_relevance: torch.Tensor
    rule: str

    @property
    def finite(self) -> bool:
        return bool(torch.isfinite(self.wrong_relevance).all() and torch.isfinite(self.gold_relevance).all())


def _sequence_logprob(model, ids: torch.Tensor, n_context: int, rule: str):
    """Σ log p(continuation tokens | prefix) and the relevance of every input token for it."""
    with LRPForward(model, ids, rule=rule, nodes=False) as fwd:
        logp = torch.log_softmax(fwd.head(slice(n_context - 1, len(fwd) - 1)).float(), dim=-1)
        cont = fwd.ids[n_context:].to(logp.device)
        value = logp.gather(-1, cont.unsqueeze(-1)).sum()
        input_rel, _ = fwd.backward(value)
    return float(value.detach()), input_rel


def check_continuations(context_ids, wrong_ids, gold_ids) -> None:
    """Refuse what a sequence-level contrast cannot explain: an empty context or continuation, or two equal ones."""
    if not context_ids:
        raise ValueError("the context is empty")
    if not wrong_ids or not gold_ids:
        raise ValueError("both continuations must be non-empty")
    if wrong_ids == gold_ids:
        raise ValueError("the two continuations are identical: nothing to contrast")


def explain_sequences(
    model: nn.Module,
    context_ids: Sequence[int],
    wrong_ids: Sequence[int],
    gold_ids: Sequence[int],
    *,
    rule: str = "attnlrp",
) -> SequenceExplanation:
    """Sequence-level contrast of two continuations sharing ``context_ids``.

    Explains Σ log p(wrong | context) − Σ log p(gold | context): the relevance of each context token is its
    relevance for the wrong continuation minus that for the gold one (the backward is linear in its seed).
    """
    context_ids, wrong_ids, gold_ids = list(context_ids), list(wrong_ids), list(gold_ids)
    check_continuations(context_ids, wrong_ids, gold_ids)
    device = input_device(model)
    n = len(context_ids)
    lp_w, r_w = _sequence_logprob(model, as_ids(context_ids + wrong_ids, device), n, rule)
    lp_g, r_g = _sequence_logprob(model, as_ids(context_ids + gold_ids, device), n, rule)
    return SequenceExplanation(
        context_ids=context_ids,
        wrong_ids=wrong_ids,
        gold_ids=gold_ids,
        logprob_wrong=lp_w,
        logprob_gold=lp_g,
        delta=lp_w - lp_g,
        context_relevance=r_w[:n] - r_g[:n],
        rule=rule,
    )



def explain_context_pair(model: nn.Module, wrong_context: Sequence[int], gold_context: Sequence[int],
                         continuation: Sequence[int], *, rule: str = "attnlrp") -> ContextPairExplanation:
    """log p(continuation | wrong_context) − log p(continuation | gold_context), each side's relevance by its own
    backward (the two inputs differ, so there is no single input to share)."""
    wrong_context, gold_context, continuation = list(wrong_context), list(gold_context), list(continuation)
    if not wrong_context or not gold_context or not continuation:
        raise ValueError("both contexts and the continuation must be non-empty")
    if wrong_context == gold_context:
        raise ValueError("the two contexts are identical: nothing to contrast")
    device = input_device(model)
    w_ids, g_ids = wrong_context + continuation, gold_context + continuation
    lp_w, r_w = _sequence_logprob(model, as_ids(w_ids, device), len(wrong_context), rule)
    lp_g, r_g = _sequence_logprob(model, as_ids(g_ids, device), len(gold_context), rule)
    return ContextPairExplanation(w_ids, len(wrong_context), g_ids, len(gold_context), lp_w, lp_g, lp_w - lp_g,
                                  r_w, r_g, rule)
