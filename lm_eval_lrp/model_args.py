"""Which weights a set of model arguments names (no model is loaded here: :mod:`lm_eval_lrp.loading` loads them).

Model arguments come as lm-eval writes them (``pretrained=...,gguf_file=...`` or the dict in a results JSON); only
the keys that say which weights to load are used (``lrp_*``, batch and device settings are dropped).
"""

from __future__ import annotations

LOAD_KEYS = ("pretrained", "gguf_file", "revision", "subfolder", "trust_remote_code", "tokenizer", "attn_implementation")


class ModelArgsError(ValueError):
    """Model arguments that do not say which weights to load."""


def parse_model_args(args, *, strict: bool = True) -> dict:
    """``pretrained=...,gguf_file=...`` (or lm-eval's dict) → dict of strings / values. ``strict=False`` (reading a
    stored run) passes over a part that is not ``key=value`` instead of refusing it."""
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
            if not strict:
                continue
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
