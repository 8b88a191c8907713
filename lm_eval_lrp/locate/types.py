"""The values a locator takes and returns: :class:`Generation` in, :class:`Location` out.

A :class:`Generation` is one failed ``generate_until`` document as the model produced it: the prompt token ids
exactly as the model generated from (lm-eval's context encoding), the model's own generated ids after them, the
output text the task scored, the gold continuation text if the task has one, and the document. A
:class:`Location` names the token to explain (an index into the output, or into the gold continuation for the
``gold`` locator), target and contrast ids, who chose it and why, and the evidence (candidates, rollouts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..lrp.target import Contrast


class NotFound(Exception):
    """A locator found nothing to explain; the message says why (the chain goes on to the next locator).
    ``rollouts``: what it tried (kept in the record as evidence even though it found nothing)."""

    #: the attempt's status in the record's ``locate.attempts``
    status = "not_found"

    def __init__(self, message: str = "", rollouts: list | None = None):
        super().__init__(message)
        self.rollouts = list(rollouts or [])


class TimedOut(NotFound):
    """A locator ran out of its time for this document (e.g. the task's tests did not finish): recorded as a
    timeout, not as "nothing found"; the chain goes on to the next locator."""

    status = "timeout"


class LocateError(Exception):
    """A locator could not judge this document (e.g. the task's scorer raised): an error for the document."""


@dataclass(frozen=True)
class Generation:
    prompt_ids: tuple[int, ...]
    output_ids: tuple[int, ...]
    output: str
    gold: str | None = None
    doc: Any = None
    task: str = ""
    doc_id: int = -1
    prompt: str = ""  # the prompt text (for instructions that refer to it); optional
    until: tuple[str, ...] = ()  # the task's stop sequences (rollouts stop and cut there, as lm-eval does)
    max_gen_toks: int | None = None  # the task's generation budget: no rollout's output is longer than lm-eval allows

    def __post_init__(self):
        object.__setattr__(self, "prompt_ids", tuple(int(i) for i in self.prompt_ids))
        object.__setattr__(self, "output_ids", tuple(int(i) for i in self.output_ids))
        object.__setattr__(self, "until", tuple(self.until or ()))
        if not self.prompt_ids:
            raise ValueError("a Generation needs the prompt token ids the model generated from")

    @property
    def reached_max_gen_toks(self) -> bool:
        """Whether the output is as long as the task's generation budget allows: lm-eval stopped it there, before
        any stop sequence, so an answer may be missing for that alone (False when the budget is unknown)."""
        return self.max_gen_toks is not None and len(self.output_ids) >= self.max_gen_toks


@dataclass
class Candidate:
    """A position a locator considered: token index into the explained continuation, char offset into the
    output (None for the gold continuation), the token's text and the model's top-k alternatives there."""

    index: int
    offset: int | None
    token: str
    alternatives: list[dict] = field(default_factory=list)  # [{id, token, logprob}], best first
    why: str = ""


@dataclass
class Rollout:
    position: int  # token index into the output where the alternative was forced
    forced: int
    forced_token: str
    continuation: str  # the rolled-out text after the forced token (truncated)
    verdict: bool  # the task's verdict on the whole rolled-out output
    tokens: int = 0  # new tokens generated


@dataclass
class Location:
    index: int
    target: int
    contrast: int | None
    locator: str
    reason: str
    output_offset: int | None = None  # char offset into the output text; None when the gold continuation is explained
    continuation: tuple[int, ...] | None = None  # the explained continuation's ids when not the output (gold)
    candidates: list[Candidate] = field(default_factory=list)
    rollouts: list[Rollout] = field(default_factory=list)
    budget_exhausted: bool = False
    seconds: float = 0.0
    agreeing: list[str] = field(default_factory=list)  # other locators that found the same step (earliest-of links)
    #: the located step is the output's commitment to its (wrong) final answer after reasoning of its own: what the
    #: task's scorer already rejected. Agreement there, or a rollout that writes the right answer there, says nothing
    #: about where the reasoning went wrong (:func:`lm_eval_lrp.locate.confidence.confidence`)
    final_answer: bool = False
    #: what each locator that named this step (the finder and the ``agreeing`` ones) rests on
    #: (:data:`lm_eval_lrp.locate.chain.EVIDENCE`); set by the chain from each locator's declared ``evidence``
    evidence: dict[str, list[str]] = field(default_factory=dict)

    def explained_ids(self, gen: Generation) -> tuple[int, ...]:
        cont = gen.output_ids if self.continuation is None else self.continuation
        return gen.prompt_ids + tuple(cont[: self.index])

    def to_contrast(self, gen: Generation) -> Contrast:
        """What the engine explains: prompt + continuation before the located token, the last position."""
        return Contrast(self.explained_ids(gen), -1, self.target, self.contrast)

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("continuation")
        out["explains"] = "output" if self.continuation is None else "gold"
        return out
