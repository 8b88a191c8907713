"""Which predictions are wrong (by the task's own metrics), and which token to explain against which.

Correctness comes from lm-eval: each logged sample carries the values of the task's metrics, computed by the
task's own filters and ``process_results``. A sample is a failure when its primary metric is below its best value
(higher-is-better metrics: value < 1; lower-is-better: value > 0). This module never runs a model: token ids come
from an ``encode_pair(context, continuation)`` function (the harness model's own), and greedy tokens from a callable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .lrp.target import Contrast


@dataclass
class Failure:
    task: str
    doc_id: int
    kind: str  # "multiple_choice" | "generate_until"
    sample: dict
    metric: str
    metrics: dict = field(default_factory=dict)

    @property
    def doc(self):
        return self.sample.get("doc")


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


def _scalar_metrics(sample: dict) -> dict:
    out = {}
    for name in sample.get("metrics", []):
        value = sample.get(name)
        if isinstance(value, (bool, int, float, np.integer, np.floating)):
            out[name] = float(value)
    return out


def primary_metric(sample: dict, preferred: str | None = None) -> str | None:
    metrics = _scalar_metrics(sample)
    if preferred:
        return preferred if preferred in metrics else None
    return next(iter(metrics), None)


def is_wrong(value: float, higher_is_better: bool = True) -> bool:
    return value < 1.0 if higher_is_better else value > 0.0


def select_filter(samples: list[dict], preferred: str | None = None) -> str | None:
    """The filter whose samples are judged: ``preferred`` if present, else the task's first filter."""
    filters = list(dict.fromkeys(s.get("filter") for s in samples))
    if preferred is not None:
        return preferred if preferred in filters else None
    return filters[0] if filters else None


def find_failures(
    task_name: str,
    output_type: str,
    samples: list[dict],
    higher_is_better: dict | None = None,
    metric: str | None = None,
    filter_name: str | None = None,
) -> tuple[list[Failure], list[str]]:
    """Failures among the logged samples of one task, and notes to show the user (once)."""
    notes: list[str] = []
    if output_type == "loglikelihood_rolling":
        return [], [f"{task_name}: loglikelihood_rolling (perplexity) has no right or wrong answers; nothing to attribute"]
    if output_type not in ("multiple_choice", "generate_until"):
        return [], [f"{task_name}: output_type {output_type!r} is not attributed (only multiple_choice and generate_until)"]
    chosen = select_filter(samples, filter_name)
    if chosen is None:
        notes.append(f"{task_name}: filter {filter_name!r} not found; nothing attributed")
        return [], notes
    hib = higher_is_better or {}
    failures = []
    for sample in samples:
        if sample.get("filter") != chosen:
            continue
        name = primary_metric(sample, metric)
        if name is None:
            if not sample.get("metrics") or "bypass" in sample.get("metrics", []):
                notes.append(f"{task_name}: no metrics were computed (--predict_only?), so nothing can be judged wrong")
            else:
                notes.append(f"{task_name}: metric {metric!r} not among {sample.get('metrics')}; nothing attributed")
            return [], notes
        values = _scalar_metrics(sample)
        if is_wrong(values[name], hib.get(name, True)):
            failures.append(Failure(task_name, int(sample["doc_id"]), output_type, sample, name, values))
    return failures, notes


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
    sample = failure.sample
    args = sample["arguments"]
    n_choices = len(args)
    pred = task.predicted_index(sample, failure.metric)
    # lm-eval logs doc_to_target(doc) as the sample's target: not rendered again
    golds = task.gold_indices(sample["doc"], n_choices, *((sample["target"],) if "target" in sample else ()))
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


# --- generate_until ------------------------------------------------------------------------------------------


def generate_until_case(
    failure: Failure,
    task,
    hook,
    encode_pair,
    greedy: Callable[[list[int], int], list[int]],
    decode: Callable[[list[int]], str],
    max_length: int | None = None,
) -> Case:
    """Teacher-force the gold continuation; explain the first position where the greedy token leaves it.

    ``greedy(ids, start)`` returns the argmax next token after each of ``ids[start:]`` (one teacher-forced forward).
    """
    sample = failure.sample
    context = sample["arguments"][0][0]
    resp = sample.get("resps", [[""]])[0]
    output = resp[0] if isinstance(resp, list) and resp else str(resp)
    gold = hook.gold_continuation(task, sample["doc"], sample)
    if gold is None or not str(gold).strip():
        return Case(prompt=context, model_output=output, skip="no gold continuation for this task")
    if not context:
        return Case(model_output=output, gold=gold, skip="empty context: nothing precedes the answer to explain")
    ctx_ids, gold_ids = encode_pair(context, gold)
    if not gold_ids:
        return Case(prompt=context, model_output=output, gold=gold, skip="empty gold continuation")
    whole, cut = _fit(ctx_ids + gold_ids, (max_length + 1) if max_length else None)
    n_ctx = len(ctx_ids) - cut
    if n_ctx < 1:
        return Case(prompt=context, model_output=output, gold=gold, skip="gold continuation longer than max_length")
    greedy_gold = greedy(whole[:-1], n_ctx - 1)  # greedy_gold[j] = argmax next token after whole[n_ctx - 1 + j]
    k = hook.locate_divergence(gold, gold_ids, greedy_gold, decode)
    if k is None:
        return Case(
            prompt=context,
            model_output=output,
            gold=gold,
            skip="greedy decoding follows the gold continuation (the failure lies in generation settings or post-processing)",
        )
    ids = whole[: n_ctx + k]
    target = greedy_gold[k]
    if target == gold_ids[k]:
        return Case(prompt=context, model_output=output, gold=gold, skip="no valid contrast at the located position")
    return Case(
        ids=ids,
        position=len(ids) - 1,
        target=target,
        contrast=gold_ids[k],
        n_prompt=n_ctx,
        prompt=context,
        model_output=output,
        gold=gold,
        truncated=cut,
    )
