"""The reference locator's second model, as the run loads it: its model arguments split into which weights to load
and the locator's own options (``pretrained=...,gap=4,gold_in_context=false``), and the check that it shares the
evaluated model's tokenizer. The locator itself is :mod:`lm_eval_lrp.locate.reference`; the loading,
:mod:`lm_eval_lrp.loading`.
"""

from __future__ import annotations


#: the reference's own options, given among its model arguments (``pretrained=...,gap=4,gold_in_context=false``)
OPTIONS = ("gap", "gold_in_context")


def split_reference_args(args: dict, load_keys) -> tuple[dict, dict]:
    """The reference's model arguments → (which weights to load, the locator's options); an unknown key is refused."""
    unknown = [k for k in args if k not in OPTIONS and k not in load_keys]
    if unknown:
        raise ValueError(f"lrp_reference_model: unknown argument {unknown[0]!r}; the reference takes "
                         f"{', '.join(load_keys)} (which weights) and {', '.join(OPTIONS)} (the locator's options)")
    options = {}
    if "gap" in args:
        options["gap"] = nats(args["gap"], "lrp_reference_model: gap")
    if "gold_in_context" in args:
        flag = str(args["gold_in_context"]).lower()
        if flag not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"lrp_reference_model: gold_in_context={args['gold_in_context']!r} must be true or false")
        options["gold_in_context"] = flag in ("true", "1", "yes")
    return {k: v for k, v in args.items() if k not in OPTIONS}, options


def nats(value, what: str) -> float:
    """A locator's gap as a positive number of nats, else a ValueError naming ``what``."""
    try:
        gap = float(value)
    except (TypeError, ValueError):
        gap = float("nan")
    if not gap > 0:
        raise ValueError(f"{what}={value!r} must be a positive number of nats (default 5)")
    return gap


def check_same_tokenizer(reference, evaluated) -> None:
    """Refuse a reference whose tokenizer differs from the evaluated model's (token ids would mean other things)."""
    ref, ev = reference.get_vocab(), evaluated.get_vocab()
    if ref == ev:
        return
    differ = len(set(ref.items()) ^ set(ev.items()))
    raise ValueError(
        f"the reference model's tokenizer differs from the evaluated model's ({len(ref)} vs {len(ev)} tokens, "
        f"{differ} (token, id) pairs differ): a reference must share the evaluated model's tokenizer — pick a "
        "sibling of the same family (e.g. Qwen2.5-Coder-1.5B-Instruct for Qwen2.5-Coder-0.5B-Instruct)")
