"""Model I/O shared by every backward: the input ids, the backbone, the LM head and the residual-stream recorder.

These are the engine's public building blocks (explain, layerwise, batched, sequences, baselines, the self-check, the
graph and faithfulness all use them); none of them applies LRP rules by itself.
"""

from __future__ import annotations

import torch
from torch import nn

from .arch import Architecture, architecture_of
from .dispatch import execution_device, parameter
from .rules import softcap


class NodeRecorder:
    """Forward hooks that keep the residual-stream tensors: block inputs, mid-block, and the last block's output."""

    def __init__(self, model: nn.Module, arch: Architecture):
        self.layers = list(model.get_submodule(arch.layers))
        self.arch = arch
        self.tensors: list[torch.Tensor] = []
        self.handles: list = []

    def __enter__(self):
        def keep(args, kwargs):
            t = args[0] if args else kwargs.get("hidden_states")
            self.tensors.append(t)

        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            self.handles.append(layer.register_forward_pre_hook(lambda m, a, k: keep(a, k), with_kwargs=True))
            self.handles.append(
                layer.get_submodule(self.arch.mid).register_forward_pre_hook(lambda m, a, k: keep(a, k), with_kwargs=True)
            )
            if i == last:
                self.handles.append(
                    layer.register_forward_hook(lambda m, a, out: self.tensors.append(out[0] if isinstance(out, tuple) else out))
                )
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def names(self) -> list[str]:
        names = ["embed"]
        for i in range(len(self.layers)):
            names += [f"{i}.mid", f"{i}.out"]
        return names


def as_ids(input_ids, device) -> torch.Tensor:
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    if ids.dim() == 2:
        if ids.shape[0] != 1:
            raise ValueError("explain() takes one sequence (batch size 1)")
        ids = ids[0]
    if ids.dim() != 1 or ids.numel() == 0:
        raise ValueError("input_ids must be a non-empty 1-D sequence of token ids")
    return ids.to(device)


def head_logits(model: nn.Module, hidden: torch.Tensor, vocab: list[int] | None = None, *, lrp: bool = True) -> torch.Tensor:
    """LM head on selected rows of the final hidden state (with the model's logit scaling and soft-capping, if any).

    With ``vocab``, only those output rows are computed: a contrastive backward then reads two rows of the head's
    weight instead of all of it. Soft-capping takes the identity rule unless ``lrp=False`` (plain gradient)."""
    head = model.get_output_embeddings()
    hidden = hidden.to(execution_device(head))
    if vocab is None:
        logits = head(hidden)
    else:
        weight, bias = parameter(head, "weight"), parameter(head, "bias")  # offloaded heads: loaded
        index = torch.tensor(vocab, device=weight.device)
        logits = torch.nn.functional.linear(hidden.to(weight.device), weight[index], None if bias is None else bias[index])
    scaling = getattr(model.config, "logits_scaling", None)  # Granite divides its logits by a constant
    if scaling:
        logits = logits / scaling
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = softcap(logits, cap, identity=lrp)
    return logits


def backbone(model: nn.Module) -> nn.Module:
    try:
        return architecture_of(model).backbone(model)
    except ValueError:
        return model.base_model
