"""Loading the weights that a set of model arguments names (:mod:`lm_eval_lrp.model_args`): ``compare``, ``graph``,
the reference model."""

from __future__ import annotations

from .model_args import ModelArgsError


def _truthy(v) -> bool:
    return str(v).lower() in ("1", "true", "yes")


def _from_pretrained_kwargs(spec: dict, keys=("gguf_file", "revision", "subfolder")) -> dict:
    kwargs = {k: spec[k] for k in keys if spec.get(k)}
    if spec.get("trust_remote_code") is not None:
        kwargs["trust_remote_code"] = _truthy(spec["trust_remote_code"])
    return kwargs


def load_tokenizer(spec: dict):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(spec.get("tokenizer") or spec["pretrained"], **_from_pretrained_kwargs(spec))


def load_model(spec: dict, device: str = "cpu", dtype: str = "float32"):
    """The causal LM named by ``spec`` in eval mode, float32 by default (de-quantised when it is a GGUF file)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs = _from_pretrained_kwargs(spec, ("gguf_file", "revision", "subfolder", "attn_implementation"))
    torch_dtype = getattr(torch, dtype, None) if isinstance(dtype, str) and dtype != "auto" else torch.float32
    if not isinstance(torch_dtype, torch.dtype):
        raise ModelArgsError(f"dtype {dtype!r} is not a torch dtype: use float32, bfloat16 or float16")
    model = AutoModelForCausalLM.from_pretrained(spec["pretrained"], dtype=torch_dtype, **kwargs)
    return model.to(device).eval()
