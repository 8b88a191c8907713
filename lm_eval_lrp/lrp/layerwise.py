"""Contrastive LRP backward with recomputation, block by block: long contexts in bounded memory.

``explain()`` records the whole model's autograd graph at once; at 16k tokens that graph alone outgrows a 24 GB
machine. Here the forward runs without a graph and keeps only what is needed to redo one block later:

1. a no-grad forward (the LRP rules are inert without a graph, so values are the model's own) that stores, per
   decoder block, its input hidden state and the keyword arguments it was called with (a forward pre-hook with
   ``with_kwargs=True``: attention mask, rotary ``position_embeddings``, ...), plus the last block's output;
2. the objective (final norm + LM head at the explained row only) under the rules -> gradient at the last block's
   output;
3. for ``l = L-1 .. 0``: re-run block ``l`` under the rules with a graph from its stored input, and one
   ``autograd.grad`` with the incoming gradient gives the gradient at the block input and at the "mid" node (the
   input of ``Architecture.mid``, i.e. the residual stream after attention). The graph is dropped before the next.

The result equals ``explain()``'s relevance (same rules, same node names) up to float rounding. Peak memory is
``L`` stored hidden states plus one block's graph instead of ``L`` blocks' graphs.

:func:`backward_blocks` exposes step 3 to callers that need the live graph of each block (attribution graphs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from .arch import Architecture, architecture_of
from .composite import Composite
from .dispatch import input_device
from .explanation import Explanation
from .model_io import as_ids, backbone, head_logits
from .target import Contrast


@dataclass
class ForwardRecord:
    """What the no-grad forward keeps: per block its input and call kwargs, and the last block's output."""

    emb: torch.Tensor  # [1, T, d] input embeddings (what input relevance is taken on)
    inputs: list[torch.Tensor]  # [1, T, d] per block: the residual stream entering it
    kwargs: list[dict]  # per block: the keyword arguments it was called with
    args: list[tuple]  # per block: positional arguments after the hidden state (GPT-2 passes its mask so)
    final: torch.Tensor  # [1, T, d] output of the last block (before the final norm)

    def hidden(self, index: int) -> torch.Tensor:
        """Residual-stream state entering block ``index`` (``index == L``: the last block's output)."""
        return self.final if index == len(self.inputs) else self.inputs[index]


@dataclass
class BlockStep:
    """One block of the layerwise backward, handed to a callback while the block's graph is alive.

    ``x`` (leaf, requires grad) -> ``mid`` -> ``out`` were computed under the LRP rules; ``g_in``, ``g_mid``,
    ``g_out`` are the modified gradients of the explained Δℓ at the three residual-stream states.
    """

    index: int
    layer: nn.Module
    kwargs: dict
    args: tuple
    x: torch.Tensor
    mid: torch.Tensor
    out: torch.Tensor
    g_in: torch.Tensor
    g_mid: torch.Tensor
    g_out: torch.Tensor


class _Stop(Exception):
    """Raised from a hook to end a forward early (the rest of the model is not needed)."""


def decoder_layers(model: nn.Module, arch: Architecture) -> list[nn.Module]:
    return list(model.get_submodule(arch.layers))


def record_forward(model: nn.Module, ids: torch.Tensor, arch: Architecture | None = None) -> ForwardRecord:
    """No-grad forward over ``ids`` [T] keeping block inputs, block kwargs and the last block's output."""
    arch = arch or architecture_of(model)
    layers = decoder_layers(model, arch)
    inputs: list[torch.Tensor] = []
    kwargs: list[dict] = []
    rest: list[tuple] = []
    final: list[torch.Tensor] = []
    handles = []

    def pre(module, args, kw):
        x = args[0] if args else kw["hidden_states"]
        inputs.append(x.detach())
        kw = dict(kw)
        if not args:
            kw.pop("hidden_states")
        kwargs.append(kw)
        rest.append(tuple(args[1:]))

    def post(module, args, kw, out):
        final.append((out[0] if isinstance(out, tuple) else out).detach())
        raise _Stop  # the final norm and head are not needed here

    for layer in layers:
        handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
    handles.append(layers[-1].register_forward_hook(post, with_kwargs=True))
    try:
        with torch.no_grad():
            emb = model.get_input_embeddings()(ids.unsqueeze(0)).detach()
            try:
                backbone(model)(inputs_embeds=emb, attention_mask=torch.ones_like(ids).unsqueeze(0), use_cache=False)
            except _Stop:
                pass
    finally:
        for h in handles:
            h.remove()
    if len(inputs) != len(layers) or not final:
        raise RuntimeError(f"recorded {len(inputs)} of {len(layers)} blocks: the forward did not reach every block")
    return ForwardRecord(emb=emb, inputs=inputs, kwargs=kwargs, args=rest, final=final[0])


def run_block(
    layer: nn.Module, mid_module: nn.Module, x: torch.Tensor, kwargs: dict, args: tuple = (), *, stop_at_mid: bool = False
):
    """Run one decoder block on ``x``; returns ``(mid, out)`` (``out`` is None with ``stop_at_mid``).

    ``mid`` is the input of the architecture's ``mid`` sub-module: the residual stream after attention.
    """
    seen: list[torch.Tensor] = []

    def grab(module, args, kw):
        seen.append(args[0] if args else kw["hidden_states"])
        if stop_at_mid:
            raise _Stop

    handle = mid_module.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        try:
            out = layer(x, *args, **kwargs)
        except _Stop:
            out = None
    finally:
        handle.remove()
    if isinstance(out, tuple):
        out = out[0]
    if len(seen) != 1:
        raise RuntimeError(f"the mid module was called {len(seen)} times in one block (expected once)")
    return seen[0], out


def objective_gradient(model, arch, final: torch.Tensor, pos: int, target, contrast, topk: int = 5):
    """Gradient of Δℓ (final norm + LM head at row ``pos``, under the active rules) at the last block's output."""
    norm = model.get_submodule(arch.final_norm)
    with torch.enable_grad():
        h = final[:, pos : pos + 1].detach().requires_grad_(True)
        logits = head_logits(model, norm(h)[0])[0]
        c = Contrast((0,), 0, target, contrast).resolve(logits.detach())
        tgt = c.target
        value = c.delta(logits)
        (g,) = torch.autograd.grad(value, [h])
    k = min(topk, logits.numel())
    top = logits.detach().float().topk(k)
    extras = {
        "target": tgt,
        "target_logit": float(logits[tgt].detach()),
        "contrast_logit": float(logits[int(contrast)].detach()) if contrast is not None else None,
        "delta": float(value.detach()),
        "topk": [(int(i), float(v)) for v, i in zip(top.values.cpu(), top.indices.cpu())],
    }
    full = torch.zeros_like(final)
    full[:, pos : pos + 1] = g.to(full.dtype)
    return full, extras


def _rel(h: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (h.detach().float() * g.detach().float()).sum(-1).reshape(-1).cpu()


def backward_blocks(
    model: nn.Module,
    record: ForwardRecord,
    g_final: torch.Tensor,
    *,
    arch: Architecture | None = None,
    on_block: Callable[[BlockStep], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The block-by-block backward (rules must be active: call inside a :class:`Composite`).

    Returns ``(g_embed [1, T, d], node_relevance [2L+1, T])`` with rows ordered like ``explain()``'s
    ``node_names``. ``on_block(step)`` is called for each block, top to bottom, while its graph is alive.
    """
    arch = arch or architecture_of(model)
    layers = decoder_layers(model, arch)
    L = len(layers)
    T = record.final.shape[-2]
    node_rel = torch.zeros(2 * L + 1, T, dtype=torch.float32)
    g = g_final
    for index in range(L - 1, -1, -1):
        layer = layers[index]
        with torch.enable_grad():
            x = record.inputs[index].detach().requires_grad_(True)
            mid, out = run_block(layer, layer.get_submodule(arch.mid), x, record.kwargs[index], record.args[index])
            g_in, g_mid = torch.autograd.grad(
                out, [x, mid], grad_outputs=g.to(out.dtype), retain_graph=on_block is not None, allow_unused=True
            )
        g_in = torch.zeros_like(x) if g_in is None else g_in.detach()
        g_mid = torch.zeros_like(mid) if g_mid is None else g_mid.detach()
        node_rel[2 * index + 2] = _rel(record.hidden(index + 1), g)
        node_rel[2 * index + 1] = _rel(mid, g_mid)
        if on_block is not None:
            on_block(BlockStep(index, layer, record.kwargs[index], record.args[index], x, mid, out, g_in, g_mid, g))
        del x, mid, out
        g = g_in
    node_rel[0] = _rel(record.inputs[0], g)
    return g, node_rel


def node_names(n_layers: int) -> list[str]:
    names = ["embed"]
    for i in range(n_layers):
        names += [f"{i}.mid", f"{i}.out"]
    return names


def explain_layerwise(
    model: nn.Module,
    input_ids: Sequence[int] | torch.Tensor | Contrast,
    position: int = -1,
    target: int | None = None,
    contrast: int | None = None,
    *,
    rule: str = "attnlrp",
    topk: int = 5,
    nodes: bool = True,
    on_block: Callable[[BlockStep], None] | None = None,
) -> Explanation:
    """Same result as :func:`~lm_eval_lrp.lrp.explain.explain`, computed block by block with recomputation.

    The input relevance is taken on the input embeddings; the embeddings reach block 0 through an addition of
    terms that do not depend on them (GPT-2's position embeddings) or directly, so their gradient is block 0's.
    """
    c = Contrast.of(input_ids, position, target, contrast).check_vocab(model.get_output_embeddings().weight.shape[0])
    target, contrast, pos = c.target, c.contrast, c.position
    ids = as_ids(list(c.ids), input_device(model))
    T = ids.numel()
    arch = architecture_of(model)
    with Composite(model, rule, arch):
        record = record_forward(model, ids, arch)
        g_final, extras = objective_gradient(model, arch, record.final, pos, target, contrast, topk)
        g_embed, node_rel = backward_blocks(model, record, g_final, arch=arch, on_block=on_block)
    n_layers = len(record.inputs)
    return Explanation(
        input_ids=ids.tolist(),
        position=pos,
        target_id=extras["target"],
        contrast_id=None if contrast is None else int(contrast),
        target_logit=extras["target_logit"],
        contrast_logit=extras["contrast_logit"],
        delta=extras["delta"],
        input_relevance=_rel(record.emb, g_embed),
        node_names=node_names(n_layers) if nodes else [],
        node_relevance=node_rel if nodes else torch.zeros(0, T),
        rule=rule,
        topk=extras["topk"],
    )
