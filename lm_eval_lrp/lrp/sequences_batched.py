"""Sequence-level contrasts in batches: several (context, wrong, gold) triples from one forward and one backward.

Each triple gives two rows, context + wrong and context + gold, padded on the right into one batch (attention mask,
position ids counted on each row's own tokens). One backward of Σ_rows Σ log p(row's continuation) gives every row
the relevance of its own log-likelihood (rows never see each other), so each triple's answer equals
:func:`lm_eval_lrp.lrp.sequences.explain_sequences` up to float rounding. ``explain_sequences_many`` is the loop:
batches of ``batch_size`` triples (longest first); a batch that fails is retried triple by triple, and a triple
that fails alone becomes an :class:`~lm_eval_lrp.lrp.batched.ExplainError` in its place.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .arch import architecture_of
from .batched import ExplainError, free_memory, pad_batch
from .composite import Composite
from .model_io import head_logits
from .memory import is_oom
from .sequences import SequenceExplanation, check_continuations
from .shared_head import shared_head
from .target import Contrast

Triple = tuple[Sequence[int], Sequence[int], Sequence[int]]




def explain_sequences_batch(model: nn.Module, triples: Sequence[Triple], *, rule: str = "attnlrp",
                            share: bool = True) -> list[SequenceExplanation]:
    """Each triple's sequence-level contrast, all from one padded forward and one backward. ``share``: the LM head
    computed once where a triple's two rows agree (:mod:`.shared_head`; the same numbers, bit for bit)."""
    triples = [(list(c), list(w), list(g)) for c, w, g in triples]
    for c, w, g in triples:
        check_continuations(c, w, g)
    if not triples:
        return []
    rows = [c + cont for c, w, g in triples for cont in (w, g)]  # 2b: wrong, 2b + 1: gold
    n_context = [len(c) for c, _, _ in triples for _ in range(2)]
    batch = pad_batch(model, [Contrast(r) for r in rows], "right")
    arch = architecture_of(model)
    with Composite(model, rule, arch), torch.enable_grad():
        emb = model.get_input_embeddings()(batch.ids).detach().requires_grad_(True)
        out = arch.backbone(model)(inputs_embeds=emb, attention_mask=batch.mask, position_ids=batch.position_ids,
                                   use_cache=False)
        hidden = out.last_hidden_state  # [2B, T, d]
        # the positions that predict each continuation token, and those tokens, for all rows at once
        which = torch.cat([torch.full((len(r) - n,), b) for b, (r, n) in enumerate(zip(rows, n_context))])
        where = torch.cat([torch.arange(n - 1, len(r) - 1) for r, n in zip(rows, n_context)])
        tokens = torch.cat([torch.tensor(r[n:]) for r, n in zip(rows, n_context)])
        states = hidden[which.to(hidden.device), where.to(hidden.device)]
        found = shared_head(model, states, tokens, which, [(w, g) for _, w, g in triples]) if share else None
        if found is None:
            logits = head_logits(model, states)
    if found is not None:
        per_row, grad = found
        (g,) = torch.autograd.grad(states, [emb], grad_outputs=grad)
    else:
        with torch.no_grad():
            logp = torch.log_softmax(logits.float(), dim=-1)
            at = tokens.to(logp.device).unsqueeze(-1)
            picked = logp.gather(-1, at).squeeze(-1)
            per_row = torch.zeros(len(rows), device=picked.device, dtype=picked.dtype).index_add(0, which.to(picked.device), picked)
            # d Σ log p(token) / d logits = onehot(token) − softmax: the log-softmax's own backward (the same numbers),
            # computed here so that the graph holds no vocabulary-wide log-softmax (the head's backward is the rest)
            seed = logp.exp_().neg_().scatter_add_(-1, at, torch.ones_like(at, dtype=logp.dtype))
        (g,) = torch.autograd.grad(logits, [emb], grad_outputs=seed.to(logits.dtype))
    relevance = (emb.detach().float() * g.float()).sum(-1).cpu()  # [2B, T]
    values = per_row.detach().cpu().tolist()
    answers = []
    for b, (c, w, gold) in enumerate(triples):
        n = len(c)
        lp_w, lp_g = values[2 * b], values[2 * b + 1]
        answers.append(SequenceExplanation(
            context_ids=c, wrong_ids=w, gold_ids=gold, logprob_wrong=lp_w, logprob_gold=lp_g, delta=lp_w - lp_g,
            context_relevance=relevance[2 * b, :n] - relevance[2 * b + 1, :n], rule=rule))
    return answers


def explain_sequences_many(model: nn.Module, triples: Sequence[Triple], batch_size: int = 8, *,
                           rule: str = "attnlrp") -> list:
    """Every triple's :class:`SequenceExplanation` or :class:`ExplainError`, in input order."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
    results: list = [None] * len(triples)
    order = sorted(range(len(triples)), key=lambda i: -sum(map(len, triples[i])))  # longest first: little padding
    queue = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    while queue:
        chunk = queue.pop(0)
        try:
            answers = explain_sequences_batch(model, [triples[i] for i in chunk], rule=rule)
        except (RuntimeError, MemoryError, ValueError, IndexError) as err:  # one bad triple or too big a batch: one by one
            oom, message = is_oom(err), f"{type(err).__name__}: {err}"
        else:
            for i, answer in zip(chunk, answers):
                results[i] = answer
            continue
        if oom:
            free_memory()
        if len(chunk) > 1:
            queue[:0] = [[i] for i in chunk]
        else:
            results[chunk[0]] = ExplainError(chunk[0], "out of memory" if oom else message, out_of_memory=oom)
    return results
