"""Plain gradient × input of the same contrastive objective: the baseline LRP is compared against."""

from __future__ import annotations

import torch
from torch import nn

from .dispatch import input_device
from .model_io import as_ids, backbone, head_logits
from .target import Contrast


def gradient_x_input(model: nn.Module, input_ids, position: int = -1, target: int | None = None,
                     contrast: int | None = None) -> torch.Tensor:
    """Gradient × input of Δℓ (unmodified gradient) for a :class:`Contrast` (or ids, position, target, contrast).
    Returns [T] float32."""
    c = Contrast.of(input_ids, position, target, contrast)
    device = input_device(model)
    ids = as_ids(list(c.ids), device)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.enable_grad():
            emb = model.get_input_embeddings()(ids.unsqueeze(0)).detach().requires_grad_(True)
            out = backbone(model)(inputs_embeds=emb, attention_mask=torch.ones_like(ids).unsqueeze(0), use_cache=False)
            logits = head_logits(model, out.last_hidden_state[0, c.position : c.position + 1], lrp=False)[0]
            value = c.resolve(logits.detach()).delta(logits)
            (g,) = torch.autograd.grad(value, [emb])
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return (emb.detach().float() * g.float()).sum(-1)[0].cpu()
