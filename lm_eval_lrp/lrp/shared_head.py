"""The LM head of a sequence-level contrast, computed once where its two rows agree.

A triple (context, wrong, gold) gives two rows, context + wrong and context + gold. While the two continuations
agree (their first ``k`` tokens, and always the last context position), both rows have the same hidden state at
the same position: the head's logits, log-softmax and softmax there are the same numbers twice. Where the token
predicted there is the same too (the first ``k`` positions), so is the backward's seed (onehot − softmax) and the
head's backward (seed @ W). :func:`shared_head` computes each of those once and gives every row its copy.

Every number is the one the unshared computation gives: the head is applied row by row (on this machine's BLAS a
matrix product's rows do not depend on which other rows are in it, as long as there are at least two; a BLAS that
picks its kernel by the number of rows may round the last bit differently), log-softmax and exp are row-wise, and a
row is shared only when its hidden state is bitwise equal to the other's (checked; otherwise :func:`shared_head`
answers None and the caller computes every row). Only a plain ``nn.Linear`` head is shared (no logit scaling or
soft-capping, no accelerate dispatch hook); other heads answer None as well. Tested bit for bit against the
unshared path (``tests/test_harness_speed.py``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def shareable_head(model: nn.Module) -> nn.Linear | None:
    """The LM head when it is a plain linear map computed here (no scaling, capping or dispatch), else None."""
    head = model.get_output_embeddings()
    if type(head) is not nn.Linear or getattr(head, "_hf_hook", None) is not None:
        return None
    if getattr(model.config, "logits_scaling", None) or getattr(model.config, "final_logit_softcapping", None):
        return None
    if head.weight.device.type == "meta":
        return None
    return head


def _prefix(a: Sequence[int], b: Sequence[int]) -> int:
    k = 0
    while k < len(a) and k < len(b) and a[k] == b[k]:
        k += 1
    return k


def shared_head(model: nn.Module, hidden: torch.Tensor, tokens: torch.Tensor, which: torch.Tensor,
                continuations: Sequence[tuple[Sequence[int], Sequence[int]]]):
    """(Σ log p per row ``[2B]``, the head's backward ``[N, d]`` for ``hidden``) or None (not shareable).

    ``hidden`` ``[N, d]``: the rows' hidden states at the positions predicting their continuation tokens, row
    2b (wrong) then row 2b + 1 (gold) of each triple, in order; ``tokens`` ``[N]`` the predicted tokens; ``which``
    ``[N]`` the row of each; ``continuations`` the (wrong, gold) ids of each triple."""
    head = shareable_head(model)
    if head is None:
        return None
    weight = head.weight
    computed = []  # the head rows whose logits are computed (a wrong row, or a gold row past the shared prefix)
    copies, sources = [], []  # gold rows in the shared prefix, and the wrong row at the same position
    extra = []  # per gold row at the first differing token: (its head row, the wrong row whose softmax it takes)
    grad_of = [0] * hidden.shape[0]  # per head row: its row of the head's backward (computed, then extra)
    start = 0
    for wrong, gold in continuations:
        k, n_w = _prefix(wrong, gold), len(wrong)
        computed.extend(range(start, start + n_w))
        for j in range(len(gold)):
            r = start + n_w + j
            if j <= k and j < n_w:  # the same tokens up to this position: the same hidden state
                copies.append(r)
                sources.append(start + j)
                if j == k:  # a different token predicted: its own seed
                    extra.append((r, start + j))
            else:
                computed.append(r)
        start += n_w + len(gold)
    if start != hidden.shape[0]:
        raise ValueError(f"{hidden.shape[0]} head rows for continuations of {start} tokens")
    slot = {r: i for i, r in enumerate(computed)}
    logits_of = [0] * start  # per head row: its row of the computed logits
    for r in computed:
        grad_of[r] = logits_of[r] = slot[r]
    for r, src in zip(copies, sources):
        grad_of[r] = logits_of[r] = slot[src]
    for x, (r, _) in enumerate(extra):
        grad_of[r] = len(computed) + x
    if len(computed) < 2:
        return None  # a one-row matrix product may take another kernel (and other roundings) than the batch's
    device = hidden.device
    with torch.no_grad():
        states = hidden.detach()
        if copies and not torch.equal(states[torch.tensor(copies, device=device)],
                                      states[torch.tensor(sources, device=device)]):
            return None  # not bitwise the same states (a kernel that looks at the whole batch): every row computed
        logits = head(states[torch.tensor(computed, device=device)].to(weight.device))
        # one buffer for every distinct seed: the computed rows, then the extra rows (one matrix product after)
        n = len(computed)
        seed = torch.empty((n + len(extra), logits.shape[-1]), device=logits.device, dtype=torch.float32)
        logp = torch.log_softmax(logits.float(), dim=-1, out=seed[:n])
        picked = logp[torch.tensor(logits_of, device=logp.device), tokens.to(logp.device)]
        per_row = torch.zeros(2 * len(continuations), device=picked.device, dtype=picked.dtype).index_add(
            0, which.to(picked.device), picked)
        logp.exp_().neg_()  # − softmax; + 1 at each row's token below: onehot − softmax
        if extra:
            seed[n:] = logp.index_select(0, torch.tensor([slot[src] for _, src in extra], device=logp.device))
        rows = torch.tensor(computed + [r for r, _ in extra], device=seed.device)
        at_token = tokens.to(seed.device)[rows].unsqueeze(-1)
        seed.scatter_add_(-1, at_token, torch.ones_like(at_token, dtype=seed.dtype))
        grad = seed.to(logits.dtype) @ weight  # the head's backward, once per distinct seed
        grad = grad.index_select(0, torch.tensor(grad_of, device=grad.device)).to(hidden.dtype)
    return per_row, grad
