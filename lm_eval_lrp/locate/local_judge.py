"""A judge that runs in this process: a transformers chat model, greedy, a few new tokens (``--lrp_judge pretrained=...``).

The judge gets the ``judge`` locator's messages through the model's chat template (a tokenizer without one gets the
messages as plain ``role: content`` lines) and answers with the number of the first wrong step. ``trust_remote_code``
is passed through to transformers as lm-eval does; ``max_gen_toks`` (default 8) bounds the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..lrp.dispatch import input_device

LOAD_KEYS = ("pretrained", "trust_remote_code", "revision", "tokenizer", "dtype", "gguf_file")


@dataclass
class LocalJudge:
    model: torch.nn.Module
    tokenizer: object
    max_new_tokens: int = 8

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            out = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)
        text = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\n\nassistant:"
        return tok(text, add_special_tokens=True)["input_ids"]

    def __call__(self, messages: list[dict]) -> str:
        device = input_device(self.model)  # an offloaded model: where its embeddings compute
        ids = torch.tensor([self.prompt_ids(messages)], device=device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.no_grad():
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens,
                                      do_sample=False, pad_token_id=pad)
        return self.tokenizer.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True)


def load_local_judge(kwargs: dict, device: str = "cpu", dtype: str = "float32") -> LocalJudge:
    """A judge from ``pretrained=PATH[,trust_remote_code=true,revision=...,dtype=...,max_gen_toks=N]``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    unknown = set(kwargs) - set(LOAD_KEYS) - {"max_gen_toks"}
    if unknown:
        raise ValueError(f"lrp_judge: unknown argument {sorted(unknown)[0]!r} of a local judge; known: "
                         f"{', '.join(LOAD_KEYS)}, max_gen_toks")
    load = {"trust_remote_code": str(kwargs.get("trust_remote_code", "false")).lower() in ("1", "true", "yes")}
    for key in ("revision", "gguf_file"):
        if kwargs.get(key):
            load[key] = kwargs[key]
    torch_dtype = getattr(torch, str(kwargs.get("dtype") or dtype).removeprefix("torch."))
    model = AutoModelForCausalLM.from_pretrained(kwargs["pretrained"], dtype=torch_dtype, **load).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(kwargs.get("tokenizer") or kwargs["pretrained"], **load)
    return LocalJudge(model, tokenizer, int(kwargs.get("max_gen_toks", 8)))
