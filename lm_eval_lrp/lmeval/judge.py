"""The judges of the ``judge`` locator, built from lm-eval's own API model class ``local-chat-completions``.

``--lrp_judge "model=NAME,base_url=http://HOST:PORT/v1/chat/completions"`` is one judge (an OpenAI-compatible chat
server: vLLM, SGLang, llama.cpp's server, a hosted API); several are separated by ``;`` and vote. Each judge's
arguments are lm-eval's ``--model_args`` of ``local-chat-completions`` (e.g. ``max_retries=``, ``timeout=``,
``max_gen_toks=``); the default ``max_gen_toks`` is 8 (a step number). Greedy (temperature 0).
``--lrp_judge pretrained=PATH`` is a local transformers chat model instead (no server; ``trust_remote_code=`` passed
through); local judges and servers may be mixed, and all vote.
"""

from __future__ import annotations

import json
from typing import Callable

from lm_eval.api.instance import Instance
from lm_eval.models.api_models import JsonChatStr
from lm_eval.models.openai_completions import LocalChatCompletion

from ..locate.judge import parse_judges


def make_judges(spec: str, device: str = "cpu", dtype: str = "float32") -> Callable[[list[dict]], list[str]]:
    """``ask(messages) -> [each judge's answer]`` over lm-eval's ``LocalChatCompletion`` (servers) and local
    transformers chat models (``pretrained=``, loaded once on ``device``, in ``dtype`` unless they name one)."""
    from ..locate.local_judge import load_local_judge

    models, local = [], []
    for kwargs in parse_judges(spec):
        if "pretrained" in kwargs:
            local.append(load_local_judge(kwargs, device, dtype))
            continue
        kwargs.setdefault("max_gen_toks", 8)
        kwargs.setdefault("tokenizer_backend", None)
        kwargs.setdefault("tokenized_requests", False)
        try:
            models.append(LocalChatCompletion(**kwargs))
        except ModuleNotFoundError as err:
            raise ValueError(f"lrp_judge: {err} — install them with pip install 'lm-eval-lrp[judge]'") from None

    def ask(messages: list[dict]) -> list[str]:
        answers = []
        for lm in models:
            request = Instance("generate_until", doc={}, idx=0,
                               arguments=(JsonChatStr(json.dumps(messages)), {"until": [], "do_sample": False}))
            answers.extend(lm.generate_until([request], disable_tqdm=True))
        answers.extend(judge(messages) for judge in local)
        return answers

    return ask
