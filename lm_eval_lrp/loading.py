"""Which weights a set of model arguments names, and loading them (``lm-eval-lrp compare`` and ``graph``).

Model arguments come as lm-eval writes them (``pretrained=...,gguf_file=...`` or the dict in a results JSON); only
the keys that say which weights to load are used (``lrp_*``, batch and device settings are dropped).
"""

from __future__ import annotations

LOAD_KEYS = ("pretrained", "gguf_file", "revision", "subfolder", "trust_remote_code", "tokenizer", "attn_implementation")


class ModelArgsError(ValueError):
    """Model arguments that do not say which weights to load."""


def parse_model_args(args) -> dict:
    """``pretrained=...,gguf_file=...`` (or lm-eval's dict) → dict of strings / values."""
    if args is None:
        return {}
    if isinstance(args, dict):
        return dict(args)
    out = {}
    for part in str(args).split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ModelArgsError(f"model argument {part!r} is not key=value")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def load_spec(args: dict) -> dict:
    """The keys that say which weights to load."""
    spec = {k: v for k, v in args.items() if k in LOAD_KEYS and v not in (None, "")}
    if "pretrained" not in spec:
        raise ModelArgsError("no 'pretrained' among the model arguments: pass pretrained=...")
    return spec


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


def recorded_dtype(args: dict) -> str | None:
    """The dtype lm-eval loaded the model in (``dtype=`` / ``torch_dtype=`` among its model arguments), as a torch
    name (``bfloat16``); None when not given or ``auto``."""
    value = args.get("dtype") or args.get("torch_dtype")
    if value in (None, "", "auto"):
        return None
    return str(value).removeprefix("torch.")


def describe(spec: dict, dtype: str | None = None, rule: str | None = None) -> str:
    """Which weights (and, when given, in which dtype and under which LRP rule): a run's name on pages."""
    extra = [f"{k}={spec[k]}" for k in ("gguf_file", "revision", "subfolder") if spec.get(k)]
    extra += [f"{k}={v}" for k, v in (("dtype", dtype), ("rule", rule)) if v]
    return str(spec.get("pretrained")) + (f" ({', '.join(extra)})" if extra else "")


def short_name(spec: dict) -> str:
    """A model's short name: the GGUF file without ``.gguf``, else the last folder of ``pretrained``; ``@revision``."""
    pretrained = str(spec.get("pretrained") or "")
    name = str(spec.get("gguf_file") or "").removesuffix(".gguf") or pretrained.rstrip("/").rsplit("/", 1)[-1] or pretrained
    return name + (f"@{spec['revision']}" if spec.get("revision") else "")
