"""What locators share for one document: the model, the tokenizer's encode/decode, the scorer, the budget, and one
forward over prompt + output (:class:`Scan`: the model's top-k at every output position, and its KV cache).

A :class:`Context` holds plain callables, never lm-eval objects. The harness makes one per task and binds the
document's scorer with :meth:`Context.for_doc`; the scan of a generation is computed once and shared by every
locator of the chain (:meth:`Context.scan`), then dropped (:meth:`Context.release`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import torch

from ..lrp.dispatch import input_device
from .decoding import cache_of
from .types import Candidate, Generation


@dataclass(frozen=True)
class Budget:
    """Bounds on the rollout search, per failure."""

    max_rollouts: int = 24  # forced alternatives continued, in all
    max_new_tokens: int = 256  # per rollout
    width: int = 3  # alternatives tried per position (the model's next best tokens)


@dataclass
class Scan:
    """One forward (no gradient) over prompt + output: for output position i (predicting ``output_ids[i]``) the
    model's top-k ids and log-probs and the output token's log-prob; with ``cache`` the KV cache of the whole
    sequence (rollouts slice it to any prefix)."""

    topk_ids: torch.Tensor  # [n, k]
    topk_logprobs: torch.Tensor  # [n, k]
    chosen_logprobs: torch.Tensor  # [n]
    cache: Any = None
    last_logits: torch.Tensor | None = None  # logits after the whole output (a position past the last token)
    watched: dict[int, torch.Tensor] | None = None  # token id -> its log-prob at every position [n + 1] (end tokens)

    def alternatives(self, i: int, decode) -> list[dict]:
        return [{"id": int(t), "token": decode([int(t)]), "logprob": round(float(v), 4)}
                for t, v in zip(self.topk_ids[i], self.topk_logprobs[i])]


def scan(model, prompt_ids: Sequence[int], output_ids: Sequence[int], k: int = 10, keep_cache: bool = True,
         watch: Sequence[int] = ()) -> Scan:
    device = input_device(model)
    ids = torch.tensor([list(prompt_ids) + list(output_ids)], device=device)
    n_p = len(prompt_ids)
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=keep_cache)
    logits = out.logits[0, n_p - 1 :].float()  # row j predicts output[j]; the last row follows the whole output
    logp = torch.log_softmax(logits, dim=-1)
    top = logp.topk(min(k, logp.shape[-1]), dim=-1)
    n = len(output_ids)
    chosen = logp[torch.arange(n, device=logp.device), torch.tensor(list(output_ids), device=logp.device, dtype=torch.long)]
    watched = {int(t): logp[:, int(t)].cpu() for t in watch if 0 <= int(t) < logp.shape[-1]}
    return Scan(top.indices[:n].cpu(), top.values[:n].cpu(), chosen.cpu(),
                cache_of(out) if keep_cache else None, logits[n].cpu(), watched)


@dataclass
class Context:
    decode: Callable[[Sequence[int]], str]
    encode: Callable[[str], list[int]] | None = None  # text -> ids without special tokens (contrast strings)
    model: Any = None  # the evaluated Hugging Face causal LM (None: text-only locators)
    score: Callable[[str], bool] | None = None  # the task's verdict on an output text (True: correct)
    topk: int = 10
    budget: Budget = field(default_factory=Budget)
    eos_ids: frozenset[int] = frozenset()
    kind: str | None = None  # "math" | "code" | "instructions" | None: which verifiers apply (None: by the doc)
    token_text: Callable[[int], str] | None = None  # one token's text, special tokens by name (<|im_end|>)
    _scans: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_tokenizer(cls, tokenizer, model=None, **kwargs) -> "Context":
        eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos |= set(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos] if gen_eos is not None else [])
        return cls(decode=lambda ids: tokenizer.decode(list(ids), skip_special_tokens=True),
                   encode=lambda text: tokenizer(text, add_special_tokens=False)["input_ids"],
                   model=model, eos_ids=frozenset(eos), token_text=lambda i: tokenizer.decode([int(i)]), **kwargs)

    def token(self, token_id: int) -> str:
        """One token as a reader should see it: its text, a special token by its name (never an empty string)."""
        return self.token_text(token_id) if self.token_text is not None else self.decode([token_id])

    def for_doc(self, score: Callable[[str], bool] | None = None) -> "Context":
        """The same context with this document's scorer (scans are not shared across documents)."""
        return replace(self, score=score, _scans={})

    def scan(self, gen: Generation) -> Scan:
        if self.model is None:
            raise LookupError("no model in the locate context: the model's top-k is unavailable")
        key = (gen.prompt_ids, gen.output_ids)
        if key not in self._scans:
            self._scans[key] = scan(self.model, gen.prompt_ids, gen.output_ids, self.topk, watch=sorted(self.eos_ids))
        return self._scans[key]

    def release(self) -> None:
        self._scans.clear()

    # --- text <-> tokens ----------------------------------------------------------------------------------

    def offsets(self, ids: Sequence[int]) -> list[int]:
        """Char offset of each token's start in ``decode(ids)``, plus the total length at the end."""
        key = ("offsets", tuple(ids))
        if key not in self._scans:
            out, ids = [0], list(ids)
            for i in range(1, len(ids) + 1):
                out.append(len(self.decode(ids[:i])))
            self._scans[key] = out
        return self._scans[key]

    def index_at(self, gen: Generation, offset: int) -> int:
        """The output token whose text covers char ``offset`` (``len(output_ids)`` when past the last one)."""
        starts, n = self.offsets(gen.output_ids), len(gen.output_ids)
        for i in range(n):
            if starts[i + 1] > offset:
                return i
        # at the end of the text: the first token that adds nothing there (the model's end-of-sequence token)
        return next((i for i in range(n) if starts[i] >= offset), n)

    def tokens_in(self, gen: Generation, start: int, end: int) -> list[int]:
        """The output tokens whose text overlaps the characters [start, end) of the output."""
        starts = self.offsets(gen.output_ids)
        return [i for i in range(len(gen.output_ids)) if starts[i + 1] > start and starts[i] < end]

    def candidate(self, gen: Generation, index: int, why: str = "") -> Candidate:
        token = self.decode([gen.output_ids[index]]) if index < len(gen.output_ids) else ""
        alts = []
        if self.model is not None and index < len(gen.output_ids):
            alts = self.scan(gen).alternatives(index, self.decode)
        return Candidate(index, self.offsets(gen.output_ids)[min(index, len(gen.output_ids))], token, alts, why)

    def target_at(self, gen: Generation, index: int) -> int:
        """The model's token at ``index``: the output token, or past the end the model's own next choice."""
        if index < len(gen.output_ids):
            return gen.output_ids[index]
        last = self.scan(gen).last_logits
        return int(last.argmax())

    def pick_contrast(self, gen: Generation, index: int, accept: Callable[[str], bool]) -> int | None:
        """The highest-ranked top-k alternative at ``index`` (not the model's token) whose text ``accept``s."""
        if self.model is None:
            return None
        s = self.scan(gen)
        if index < len(gen.output_ids):
            ids = s.topk_ids[index].tolist()
        else:
            ids = s.last_logits.topk(min(self.topk, s.last_logits.numel())).indices.tolist()
        target = self.target_at(gen, index)
        for t in ids:
            if t != target and accept(self.decode([t]) if t not in self.eos_ids else ""):
                return int(t)
        return None

    def end_token(self, gen: Generation, index: int) -> int | None:
        """The model's most probable end-of-text token at output position ``index`` (``len(output_ids)``: after the
        whole output), whether or not it is among the top-k; None without a model or end tokens."""
        if self.model is None or not self.eos_ids:
            return None
        watched = self.scan(gen).watched or {}
        best = max(((float(lp[index]), t) for t, lp in watched.items() if index < len(lp)), default=None)
        return None if best is None else best[1]

    def decision_point(self, gen: Generation, positions: Sequence[int]) -> tuple[int, int | None]:
        """Among ``positions`` (output token indices), the one where the model's best alternative to its own token
        was most probable (the earliest on a tie), and that alternative; without a model, the first and None."""
        if self.model is None:
            return positions[0], None
        s = self.scan(gen)

        def best(i):
            return next(((int(t), v) for t, v in zip(s.topk_ids[i].tolist(), s.topk_logprobs[i].tolist())
                         if t != gen.output_ids[i] and t not in self.eos_ids), (None, float("-inf")))

        index = max(positions, key=lambda i: (best(i)[1], -i))
        return index, best(index)[0]
