"""``prm``: a process reward model scores each step of the failed output; the first step scored below a threshold is
the error, and its decision point is explained.

A process reward model (Qwen2.5-Math-PRM-7B style) reads the problem and the solution with a separator token after
each step (``<extra_0>``) and gives, at every separator, a score that the step is correct: two logits per token
(softmax, the positive class) or one (sigmoid). It is loaded through transformers: ``AutoModel`` with
``trust_remote_code`` where the checkpoint ships its own class (as lm-eval passes ``trust_remote_code``), else
``AutoModelForTokenClassification``. Many solutions are scored in one padded batch (:meth:`ProcessRewardModel.score`);
in a run, the failures of a task are scored together before they are explained (:meth:`PRMLocator.prefetch`).

The output is split into steps as the ``judge`` locator splits it (lines, sentences within a line). Inside the first
low step the explained token is its decision point — the token whose best alternative the evaluated model found most
probable — with that alternative as the contrast; with a scorer and a rollout budget, the alternatives there are
rolled out and one the task's scorer accepts becomes the contrast (as in ``trajectory``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..lrp.dispatch import input_device
from .context import Context
from .judge import steps
from .counterfactual import confirm
from .trajectory import question_of
from .types import Generation, Location, NotFound

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
#: the ``--lrp_prm`` arguments that are the locator's (the rest say which weights to load)
OPTIONS = ("threshold", "step_token", "batch_size", "positive", "system", "max_length")


@dataclass
class ProcessRewardModel:
    """A loaded PRM: ``score([(problem, [step, ...]), ...])`` → one list of step scores in [0, 1] per solution."""

    model: torch.nn.Module
    tokenizer: object
    step_token: str = "<extra_0>"
    positive: int = 1  # the label of "this step is correct" (two or more labels)
    batch_size: int = 8
    system: str = SYSTEM
    max_length: int | None = None

    def __post_init__(self):
        ids = self.tokenizer(self.step_token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"prm: the step separator {self.step_token!r} is not one token of the PRM's tokenizer "
                             "(give its separator with step_token=...)")
        self.step_id = int(ids[0])
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0

    def text(self, problem: str, solution_steps: Sequence[str]) -> str:
        """The PRM's input: the chat (system, problem, the steps each followed by the separator) where the tokenizer
        has a chat template, else the problem and the steps as plain text."""
        answer = "".join(s.replace(self.step_token, " ") + self.step_token for s in solution_steps)
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": self.system}, {"role": "user", "content": problem},
                        {"role": "assistant", "content": answer}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        return f"{problem}\n\n{answer}"

    def score(self, solutions: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        device = input_device(self.model)  # an offloaded model: where its embeddings compute
        out: list[list[float]] = []
        for start in range(0, len(solutions), self.batch_size):
            chunk = solutions[start : start + self.batch_size]
            rows = [self.tokenizer(self.text(p, s), add_special_tokens=False)["input_ids"] for p, s in chunk]
            if self.max_length:
                rows = [r[-self.max_length :] for r in rows]
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for b, r in enumerate(rows):  # right padding: the separators keep their positions
                ids[b, : len(r)] = torch.tensor(r)
                mask[b, : len(r)] = 1
            with torch.no_grad():
                result = self.model(input_ids=ids.to(device), attention_mask=mask.to(device))
            logits = (result.logits if hasattr(result, "logits") else result[0]).float()
            probs = torch.sigmoid(logits[..., 0]) if logits.shape[-1] == 1 else logits.softmax(-1)[..., self.positive]
            for b, r in enumerate(rows):
                at = (ids[b, : len(r)] == self.step_id).nonzero().flatten()
                out.append([round(float(x), 6) for x in probs[b, at.to(probs.device)]])
        return out


def split_prm_args(args: dict) -> tuple[dict, dict]:
    """(load arguments, locator options) of ``--lrp_prm``."""
    load = {k: v for k, v in args.items() if k not in OPTIONS}
    options = {k: v for k, v in args.items() if k in OPTIONS}
    return load, options


def load_prm(args: dict, device: str = "cpu", dtype: str | None = None) -> tuple[ProcessRewardModel, float]:
    """The PRM named by ``args`` (``pretrained=``, ``trust_remote_code=``, ``revision=``, plus ``threshold``,
    ``step_token``, ``batch_size``, ``positive``, ``system``, ``max_length``) and its threshold."""
    from transformers import AutoConfig, AutoModel, AutoModelForTokenClassification, AutoTokenizer

    load, options = split_prm_args(args)
    if not load.get("pretrained"):
        raise ValueError("lrp_prm: give the process reward model as pretrained=PATH_OR_NAME")
    unknown = set(load) - {"pretrained", "trust_remote_code", "revision", "tokenizer", "dtype"}
    if unknown:
        raise ValueError(f"lrp_prm: unknown argument {sorted(unknown)[0]!r}; known: pretrained, trust_remote_code, "
                         f"revision, tokenizer, dtype, {', '.join(OPTIONS)}")
    kwargs = {"trust_remote_code": str(load.get("trust_remote_code", "false")).lower() in ("1", "true", "yes")}
    if load.get("revision"):
        kwargs["revision"] = load["revision"]
    config = AutoConfig.from_pretrained(load["pretrained"], **kwargs)
    own_class = kwargs["trust_remote_code"] and "AutoModel" in (getattr(config, "auto_map", None) or {})
    loader = AutoModel if own_class else AutoModelForTokenClassification
    torch_dtype = getattr(torch, str(load.get("dtype") or dtype or "float32").removeprefix("torch."))
    model = loader.from_pretrained(load["pretrained"], dtype=torch_dtype, **kwargs).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(load.get("tokenizer") or load["pretrained"], **kwargs)
    prm = ProcessRewardModel(model, tokenizer, step_token=options.get("step_token", "<extra_0>"),
                             positive=int(options.get("positive", 1)), batch_size=int(options.get("batch_size", 8)),
                             system=options.get("system", SYSTEM),
                             max_length=int(options["max_length"]) if options.get("max_length") else None)
    return prm, float(options.get("threshold", 0.5))


def first_low(scores: Sequence[float], threshold: float) -> int | None:
    """The index of the first step scored below ``threshold`` (None: every step is above)."""
    return next((i for i, s in enumerate(scores) if s < threshold), None)


class PRMLocator:
    name = "prm"
    needs = ("prm",)
    evidence = ("prm",)

    def __init__(self, prm: ProcessRewardModel | None = None, threshold: float = 0.5):
        if prm is None:
            raise ValueError("the prm locator needs a process reward model: --lrp_prm pretrained=PATH")
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"prm: threshold must lie between 0 and 1, got {threshold!r}")
        self.prm, self.threshold = prm, float(threshold)
        self._scores: dict = {}  # scored ahead in batches (prefetch), taken once by locate

    @staticmethod
    def solution(gen: Generation) -> tuple[str, tuple[str, ...]]:
        """What the PRM reads: the problem and the output's steps."""
        return question_of(gen), tuple(gen.output[a:b] for a, b in steps(gen.output))

    def prefetch(self, gens: list[Generation]) -> None:
        """Score the steps of many failures at once (the PRM's batches); ``locate`` then takes each one's scores."""
        todo = list(dict.fromkeys(key for g in gens if g.output_ids and (key := self.solution(g))[1]))
        todo = [key for key in todo if key not in self._scores]
        if todo:
            self._scores.update(zip(todo, self.prm.score(todo)))

    def locate(self, gen: Generation, ctx: Context) -> Location:
        spans = steps(gen.output)
        if not spans or not gen.output_ids:
            raise NotFound("empty output")
        key = self.solution(gen)
        scores = self._scores.pop(key) if key in self._scores else self.prm.score([key])[0]
        if len(scores) != len(spans):
            raise NotFound(f"the PRM scored {len(scores)} of {len(spans)} steps (the input was cut: raise max_length)")
        step = first_low(scores, self.threshold)
        shown = ", ".join(f"{s:.2f}" for s in scores[:12]) + (" …" if len(scores) > 12 else "")
        if step is None:
            raise NotFound(f"the PRM scores every step at least {self.threshold:g} ({shown})")
        a, b = spans[step]
        n = len(gen.output_ids)
        positions = [i for i in ctx.tokens_in(gen, a, b) if i < n] or [i for i in [ctx.index_at(gen, a)] if i < n]
        if not positions:
            raise NotFound("the low step lies past the output's tokens")
        index, contrast = ctx.decision_point(gen, positions)
        how = "its decision point, contrast = the model's best alternative"
        fix, rolled = confirm(gen, ctx, index, contrast)
        if fix is not None:
            contrast, how = fix, "its decision point, contrast = the highest-ranked alternative whose rollout is accepted"
        reason = (f"the PRM scores step {step + 1} ({gen.output[a:b][:80]!r}) {scores[step]:.2f} < {self.threshold:g}, "
                  f"the first below the threshold (steps: {shown}); explained: {how}")
        cands = [ctx.candidate(gen, i, f"step {step + 1}") for i in positions[:12]]
        return Location(index, gen.output_ids[index], contrast, self.name, reason,
                        output_offset=ctx.offsets(gen.output_ids)[index], candidates=cands, rollouts=rolled)
