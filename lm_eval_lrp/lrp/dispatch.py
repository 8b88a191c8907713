"""Models dispatched by accelerate (``device_map``, ``parallelize=True``, CPU or disk offload) as the engine sees them.

accelerate moves inputs and, for offloaded modules, loads the weights only *inside* a module's forward (its
``AlignDevicesHook`` wraps ``forward``); outside, an offloaded parameter is an empty tensor on the ``meta`` device.
The LRP rules run in forward hooks, after that wrapper has put the weights back, and the engine places its inputs
before any forward. So the engine asks here where a module computes (:func:`execution_device`) and reads an
offloaded parameter's values from accelerate's store (:func:`parameter`), never from the empty tensor.
Plain models (no hooks) get their own parameters and devices.
"""

from __future__ import annotations

import torch
from torch import nn


def _hooks(module: nn.Module) -> list:
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        return []
    return list(getattr(hook, "hooks", None) or [hook])  # a SequentialHook holds several


def execution_device(module: nn.Module) -> torch.device:
    """Where ``module`` computes: accelerate's execution device, else that of its first parameter (CPU if none)."""
    for hook in _hooks(module):
        device = getattr(hook, "execution_device", None)
        if device is not None:
            return torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
    for p in module.parameters():
        if p.device.type != "meta":
            return p.device
    return torch.device("cpu")


def input_device(model: nn.Module) -> torch.device:
    """Where the model's token ids go: the input embedding's execution device."""
    return execution_device(model.get_input_embeddings())


def parameter(module: nn.Module, name: str = "weight") -> torch.Tensor | None:
    """``module.<name>`` with its values: an offloaded one is loaded (on the execution device) for the caller."""
    p = getattr(module, name, None)
    if not isinstance(p, torch.Tensor) or p.device.type != "meta":
        return p
    from accelerate.utils import align_module_device

    with align_module_device(module):
        return getattr(module, name)  # the loaded tensor stays valid after accelerate puts the meta one back
