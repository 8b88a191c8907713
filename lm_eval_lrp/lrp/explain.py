"""The explain API: one contrastive LRP backward on a Hugging Face causal LM.

``explain(model, ids, position, target, contrast)`` explains Δℓ = ℓ(target) − ℓ(contrast), the logits of the
next token after ``ids[position]``. Relevance of an activation x is ``x · g̃(x)`` with g̃ the gradient of Δℓ under
the LRP rules (:mod:`lm_eval_lrp.lrp.rules`). Gradients go to the input embeddings and the residual-stream nodes
only (no parameter gradients); the LM head is applied only at the explained position.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch
from torch import nn

from .arch import architecture_of
from .composite import Composite
from .dispatch import input_device
from .explanation import Explanation
from .layerwise import explain_layerwise
from .model_io import NodeRecorder, as_ids, head_logits
from .target import Contrast


class LRPForward:
    """One forward pass under the LRP rules, kept so that backward passes can start from positions chosen after it.

    >>> with LRPForward(model, ids) as fwd:
    ...     greedy = fwd.greedy(start=n_prompt - 1)     # next-token argmax of rows start.. (no extra forward)
    ...     expl = fwd.explain(position, target, contrast)

    The forward is the model's own (values bit-identical to a plain forward); the rules only shape the backward.
    Gradients go to the input embeddings and, with ``nodes=True``, to the residual-stream nodes; never to
    parameters. A backward frees the graph as it goes unless ``retain_graph=True`` (several positions from one
    forward); leaving the ``with`` block (or :meth:`release`) drops everything.
    """

    def __init__(self, model: nn.Module, input_ids, *, rule: str = "attnlrp", nodes: bool = True):
        self.model = model
        self.rule = rule
        arch = architecture_of(model)
        device = input_device(model)
        self.ids = as_ids(input_ids, device)
        start = time.perf_counter()
        with Composite(model, rule, arch), torch.enable_grad():
            emb = model.get_input_embeddings()(self.ids.unsqueeze(0)).detach().requires_grad_(True)
            recorder = NodeRecorder(model, arch) if nodes else None
            mask = torch.ones_like(self.ids).unsqueeze(0)
            if recorder is not None:
                with recorder:
                    out = arch.backbone(model)(inputs_embeds=emb, attention_mask=mask, use_cache=False)
            else:
                out = arch.backbone(model)(inputs_embeds=emb, attention_mask=mask, use_cache=False)
        self.hidden = out.last_hidden_state[0]  # [T, d], part of the graph
        self.tensors = [emb] + (recorder.tensors if recorder is not None else [])
        self.node_names = recorder.names() if recorder is not None else []
        self._spent = False
        self.seconds = {"forward": time.perf_counter() - start}

    def __len__(self) -> int:
        return self.ids.numel()

    def __enter__(self) -> "LRPForward":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        """Drop the graph and the stored activations."""
        self.hidden = None
        self.tensors = []

    def _alive(self) -> None:
        if self.hidden is None:
            raise RuntimeError("this LRPForward was released; run a new forward")

    def head(self, rows) -> torch.Tensor:
        """Logits of the selected rows (an int, slice or index tensor), in the graph: ``[n, V]``."""
        self._alive()
        hidden = self.hidden[rows]
        with torch.enable_grad():
            return head_logits(self.model, hidden.reshape(-1, hidden.shape[-1]))

    def greedy(self, start: int = 0, chunk: int = 256) -> list[int]:
        """Argmax next token after each position ``start..T-1`` (the LM head only on those rows)."""
        self._alive()
        out = []
        with torch.no_grad():
            for lo in range(start % len(self) if start < 0 else start, len(self), chunk):
                rows = self.hidden[lo : min(lo + chunk, len(self))].detach()
                out += head_logits(self.model, rows).argmax(-1).tolist()
        return out

    def backward(self, value: torch.Tensor, *, retain_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Relevance of the inputs ``[T]`` and of the nodes ``[N, T]`` for the scalar ``value``.

        Node relevance is taken by tensor hooks as the backward passes each node, so no node gradient outlives its
        layer, and without ``retain_graph`` each layer's saved activations are freed as soon as it is done: the
        peak memory of a plain backward. ``retain_graph=True`` keeps the graph for another backward.
        """
        self._alive()
        if self._spent:
            raise RuntimeError("this forward's graph was used by a backward without retain_graph=True; "
                               "pass retain_graph=True to explain several positions from one forward")
        T = len(self)
        nodes = self.tensors[1:]
        node_rel = torch.zeros(len(nodes), T)

        def keeper(i):
            def hook(g):
                t = self.tensors[1 + i]
                node_rel[i] = (t.detach().float() * g.float()).sum(-1).reshape(-1).cpu()
                if not retain_graph:  # the graph lets go of this activation once its layer is done: so do we
                    self.tensors[1 + i] = None

            return hook

        handles = [t.register_hook(keeper(i)) for i, t in enumerate(nodes) if t.requires_grad]
        try:
            (g,) = torch.autograd.grad(value, self.tensors[:1], allow_unused=True, retain_graph=retain_graph)
        finally:
            for h in handles:
                h.remove()
        self._spent = not retain_graph
        emb = self.tensors[0]
        input_rel = (torch.zeros(T) if g is None
                     else (emb.detach().float() * g.float()).sum(-1).reshape(-1).cpu())
        return input_rel, node_rel

    def explain(self, position: int | Contrast = -1, target: int | None = None, contrast: int | None = None, *,
                topk: int = 5, retain_graph: bool = False) -> "Explanation":
        """Explain ℓ(target) − ℓ(contrast) of the next token after ``ids[position]`` (see :func:`explain`); or pass a
        :class:`Contrast` whose ids are (a prefix of) this forward's.

        ``retain_graph=True`` keeps the forward for another explanation (at a memory cost)."""
        T = len(self)
        if isinstance(position, Contrast):
            c = position
            if len(c) > T or list(c.ids) != self.ids[: len(c)].tolist():
                raise ValueError("the Contrast's ids are not a prefix of this forward's input")
            position, target, contrast = c.position, c.target, c.contrast
        if not -T <= position < T:
            raise IndexError(f"position {position} outside a sequence of {T} tokens")
        c = Contrast((0,) * T, position, target, contrast).check_vocab(self.model.get_output_embeddings().weight.shape[0])
        pos = c.position
        self._alive()
        start = time.perf_counter()
        row = self.hidden[pos : pos + 1]
        with torch.no_grad():  # all logits for the top-k; the explained ones below, in the graph
            logits = head_logits(self.model, row.detach())[0]
        c = c.resolve(logits)
        tgt = c.target
        with torch.enable_grad():
            chosen = head_logits(self.model, row, c.tokens)[0]
        value = c.delta_of(chosen)
        top = logits.float().topk(min(topk, logits.numel()))
        input_rel, node_rel = self.backward(value, retain_graph=retain_graph)
        return Explanation(
            input_ids=self.ids.tolist(),
            position=pos,
            target_id=tgt,
            contrast_id=None if contrast is None else int(contrast),
            target_logit=float(chosen[0].detach()),
            contrast_logit=float(chosen[1].detach()) if contrast is not None else None,
            delta=float(value.detach()),
            input_relevance=input_rel,
            node_names=list(self.node_names),
            node_relevance=node_rel,
            rule=self.rule,
            topk=[(int(i), float(v)) for v, i in zip(top.values.cpu(), top.indices.cpu())],
            seconds={"forward": self.seconds["forward"], "backward": time.perf_counter() - start},
        )


def explain(
    model: nn.Module,
    input_ids: Sequence[int] | torch.Tensor | Contrast,
    position: int = -1,
    target: int | None = None,
    contrast: int | None = None,
    *,
    rule: str = "attnlrp",
    topk: int = 5,
    nodes: bool = True,
    recompute: bool = False,
) -> Explanation:
    """Explain the logit difference ℓ(target) − ℓ(contrast) of the next token after ``input_ids[position]``.

    ``target`` is the token the model preferred (the wrong one); ``contrast`` the correct one. With
    ``contrast=None`` the single logit ℓ(target) is explained. With ``target=None`` the model's top token is used.
    ``rule`` is ``"attnlrp"`` or ``"cp"`` (CP-LRP). Positive relevance pushes towards ``target``.
    ``recompute=True`` runs the same backward block by block, recomputing each block from its stored input
    (:mod:`lm_eval_lrp.lrp.layerwise`): same result, memory for long contexts.
    To choose the position from the model's own predictions without a second forward, use :class:`LRPForward`.
    ``explain(model, Contrast(ids, position, target, contrast))`` is the same call with the objective as one value.
    """
    c = Contrast.of(input_ids, position, target, contrast)
    c.check_vocab(model.get_output_embeddings().weight.shape[0])
    input_ids, position, target, contrast = list(c.ids), c.position, c.target, c.contrast
    if recompute:
        return explain_layerwise(
            model, input_ids, position, target, contrast, rule=rule, topk=topk, nodes=nodes
        )
    with LRPForward(model, input_ids, rule=rule, nodes=nodes) as fwd:
        return fwd.explain(position, target, contrast, topk=topk)
