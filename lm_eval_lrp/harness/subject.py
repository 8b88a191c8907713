"""The model under evaluation as the harness loop sees it: plain values and callables, handed over by the seam.

The seam (:mod:`lm_eval_lrp.lmeval`) builds one from lm-eval's ``hf-lrp`` model; tests can build one from any Hugging
Face causal LM. Nothing here knows lm-eval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from ..config import LRPConfig


def _single(obj):
    return obj


@dataclass
class Subject:
    model: nn.Module  # the Hugging Face causal LM (the same object lm-eval evaluated)
    tokenizer: Any
    config: LRPConfig
    #: (context, continuation) -> (context ids, continuation ids), exactly as lm-eval scored log-likelihoods
    encode_pair: Callable[[str, str], tuple[list[int], list[int]]]
    #: (context, max_gen_toks) -> the token ids lm-eval's generate_until generated from (special tokens, truncation)
    generation_context: Callable[[str, int | None], list[int]] | None = None
    max_gen_toks: int | None = None  # the model's generation budget where a task sets none (lm-eval's max_gen_toks)
    #: prompt ids -> the token ids the model generated after them during the evaluation (None: not recorded)
    generated: Callable[[list[int]], list[int] | None] = lambda prompt_ids: None
    max_length: int | None = None
    #: what a record's content depends on besides the document: weights, revision, dtype
    source: dict = field(default_factory=dict)
    rank: int = 0
    world: int = 1
    #: data parallel (world > 1): broadcast an object from rank 0, gather objects to rank 0, wait for every rank
    broadcast: Callable[[Any], Any] = _single
    gather: Callable[[Any], list] = lambda obj: [obj]
    barrier: Callable[[], None] = lambda: None
    #: why this model cannot be attributed (unsupported architecture), or None
    unsupported: str | None = None
    #: the reference locator's second model (same tokenizer, no LRP on it), or None
    reference: Any = None
    #: its locator options from the reference's model arguments (``gap``, ``gold_in_context``)
    reference_options: dict = field(default_factory=dict)
    #: the judge locator's judges: messages -> one answer per judge, or None
    judge: Callable[[list[dict]], list[str]] | None = None
    #: the prm locator's process reward model and threshold (``(ProcessRewardModel, float)``), or None
    prm: Any = None
    #: the architecture self-check's figures (coverage, CP conservation, forward equality), or None
    self_check: dict | None = None
