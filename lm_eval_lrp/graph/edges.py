"""Edges of one residual transition s -> t: ``A[j, i] = Σ_k h_s[i,k] · ∂⟨h_t[j], g_t[j]⟩/∂h_s[i,k]`` (LRP rules on).

Transitions inside decoder block ``l`` (``x`` = block input, ``mid`` = residual after attention, ``out`` = output):

* attention ``x -> mid`` (``"attn"``) and MLP ``mid -> out`` (``"mlp"``).

Ways to compute the rows ``A[j, :]`` of a set of target tokens ``j``, all equal up to float rounding:

* :func:`naive_rows`   -- the reference: one forward + backward of the block per target token;
* :func:`packed_rows`  -- batch-packing (the seed paper): the block input copied B times, one forward of the
  batch, element b seeded only at row ``j_b``: ⌈n'/B⌉ passes;
* :func:`batched_rows` -- one forward, B seeds per ``autograd.grad(..., is_grads_batched=True)`` (vmap);
* :func:`mlp_diagonal_rows` -- exact shortcut for ``mid -> out``: the MLP half of a block is token-wise, so
  ``A[j, j] = h_mid[j]·g_mid[j] = R_mid(j)`` and ``A[j, i≠j] = 0``: no backward at all;
* :func:`~lm_eval_lrp.graph.attention.closed_form_attention_rows` -- exact closed form for ``x -> mid``
  with softmax attention (its own module).
"""

from __future__ import annotations

import torch

from ..lrp.layerwise import run_block

KINDS = ("attn", "mlp")


def _rows_from_grads(src: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """``[B, T]``: Σ_k src[i,k] · grad_b[i,k] for each seed b (src [1|B, T, d], grads [B, T, d])."""
    return (src.detach().float() * grads.float()).sum(-1)


def _seeds(g_t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``[B, T, d]`` zeros except element b, row ``rows[b]``, which holds ``g_t[0, rows[b]]``."""
    B = rows.numel()
    seeds = torch.zeros((B,) + tuple(g_t.shape[1:]), dtype=g_t.dtype, device=g_t.device)
    seeds[torch.arange(B), rows] = g_t[0, rows]
    return seeds


def _block_pair(layer, mid_module, x, args, kwargs, kind):
    """Run the block from a leaf copy of ``x`` (batch B): returns (source, target) tensors of the transition."""
    mid, out = run_block(layer, mid_module, x, kwargs, args, stop_at_mid=(kind == "attn"))
    return (x, mid) if kind == "attn" else (mid, out)


def naive_rows(layer, mid_module, x, args, kwargs, kind, g_t, targets) -> torch.Tensor:
    """Reference: for each target j, one forward and one backward of the block, seeded at row j only."""
    rows = []
    for j in targets.tolist():
        with torch.enable_grad():
            leaf = x.detach().clone().requires_grad_(True)
            src, tgt = _block_pair(layer, mid_module, leaf, args, kwargs, kind)
            seed = _seeds(g_t, torch.tensor([j]))
            (grad,) = torch.autograd.grad(tgt, [src], grad_outputs=seed.to(tgt.dtype))
        rows.append(_rows_from_grads(src, grad)[0])
    return torch.stack(rows) if rows else torch.zeros(0, x.shape[-2])


def packed_rows(layer, mid_module, x, args, kwargs, kind, g_t, targets, batch_size: int) -> torch.Tensor:
    """Batch-packing: the input copied B times, element b seeded only at row ``targets[b]``; ⌈n'/B⌉ passes."""
    out = []
    for chunk in targets.split(max(1, int(batch_size))):
        B = chunk.numel()
        with torch.enable_grad():
            leaf = x.detach().expand(B, *x.shape[1:]).clone().requires_grad_(True)
            src, tgt = _block_pair(layer, mid_module, leaf, args, kwargs, kind)
            (grad,) = torch.autograd.grad(tgt, [src], grad_outputs=_seeds(g_t, chunk).to(tgt.dtype))
        out.append(_rows_from_grads(src, grad))
    return torch.cat(out) if out else torch.zeros(0, x.shape[-2])


def batched_rows(src: torch.Tensor, tgt: torch.Tensor, g_t, targets, batch_size: int) -> torch.Tensor:
    """One forward (``src -> tgt`` already recorded), B seeds per vmapped backward (``is_grads_batched``)."""
    out = []
    for chunk in targets.split(max(1, int(batch_size))):
        seeds = _seeds(g_t, chunk).unsqueeze(1).to(tgt.dtype)  # [B, 1, T, d]
        (grad,) = torch.autograd.grad(tgt, [src], grad_outputs=seeds, retain_graph=True, is_grads_batched=True)
        out.append(_rows_from_grads(src, grad[:, 0]))
    return torch.cat(out) if out else torch.zeros(0, src.shape[-2])


def mlp_diagonal_rows(r_mid: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The values ``A[j, j] = R_mid(j)`` of the (diagonal) ``mid -> out`` transition, one per target."""
    return r_mid[targets].float()


# ----------------------------------------------------------------------------- closed form of attention
