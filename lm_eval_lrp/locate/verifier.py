"""Verifier locators: checks that read the model's output and say where it first goes wrong, without running it.

* ``arithmetic`` (math): the first wrong value of ``a op b = c`` / ``<<expr=value>>``; contrast = the model's
  highest-ranked alternative that starts the correct value;
* ``instructions`` (IFEval docs: ``instruction_id_list`` + ``kwargs``): the first token that breaks an instruction;
  contrast = the highest-ranked alternative that keeps it;
* ``code``: the first token of the first line Python's ``compile`` rejects;
* ``verifier``: whichever of these applies to the document (``Context.kind``, else the doc's fields), earliest hit.

Each finding is checked by rolling out its contrast and the model's next-best tokens there
(:func:`lm_eval_lrp.locate.counterfactual.confirm`): where the task's scorer accepts one, the record is
``confirmed``. Hits are also the first positions the ``rollout`` locator tries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .arithmetic import arithmetic_errors
from .code import syntax_error
from .context import Context
from .counterfactual import confirm
from .instructions import stops, violations
from ..task_kinds import kind_of_doc
from .types import Generation, Location, NotFound


@dataclass(frozen=True)
class Hit:
    offset: int  # char offset into the output
    reason: str
    accept: Callable[[str], bool] | None  # which alternative token texts would be right here
    check: str


def _value_start(correct: str, pre: str) -> Callable[[str], bool]:
    """An alternative token that keeps the text before the value (``pre``) and starts the correct value."""

    def accept(piece: str) -> bool:
        if not piece.startswith(pre):
            return False
        rest = piece[len(pre):].lstrip(" $")
        return bool(rest) and correct.startswith(rest)

    return accept


class _Check:
    name = "verifier"
    kind: str | None = None
    evidence: tuple[str, ...] = ("equations", "instructions", "syntax")  # whichever check the task's kind applies

    def hits(self, gen: Generation, ctx: Context) -> list[Hit]:
        raise NotImplementedError

    def locate(self, gen: Generation, ctx: Context) -> Location:
        hits = self.hits(gen, ctx)
        if not hits:
            raise NotFound(f"{self.name}: no violation found in the output")
        cands = []
        for hit in hits:
            index = ctx.index_at(gen, hit.offset)
            if index >= len(gen.output_ids) and ctx.model is None:
                continue  # the model's own stop choice needs the model
            cands.append((index, hit))
        if not cands:
            raise NotFound(f"{self.name}: the violation lies past the output and there is no model to ask")
        index, hit = cands[0]
        target = ctx.target_at(gen, index)
        why = f"{hit.check}: {hit.reason}"
        contrast = None
        if hit.accept is stops:  # the instruction asks to stop here: the contrast is ending the text now (white space
            contrast = ctx.end_token(gen, index)  # also "stops" visibly, but the model writes on after it)
            why += "" if contrast is None else " (contrast: the end of text)"
        if contrast is None and hit.accept is not None:
            contrast = ctx.pick_contrast(gen, index, hit.accept)
        if contrast is None:
            why += " (no alternative among the model's top-k fixes it: no contrast)"
        fix, rolled = confirm(gen, ctx, index, contrast)
        if fix is not None and fix != contrast:
            contrast = fix
            why += "; contrast: the highest-ranked alternative whose rollout the task's scorer accepts"
        candidates = [ctx.candidate(gen, i, f"{h.check}: {h.reason}") for i, h in cands]
        return Location(index, target, contrast, self.name, why, output_offset=_token_start(gen, ctx, index),
                        candidates=candidates, rollouts=rolled)


def _token_start(gen: Generation, ctx: Context, index: int) -> int:
    """Where the explained token starts in the output (a violation's character may lie inside it); the end of the
    output for the model's own stop choice."""
    return ctx.offsets(gen.output_ids)[index] if index < len(gen.output_ids) else len(gen.output)


class ArithmeticVerifier(_Check):
    name = "arithmetic"
    evidence = ("equations",)
    kind = "math"

    def hits(self, gen, ctx):
        out = []
        starts = ctx.offsets(gen.output_ids)
        for err in arithmetic_errors(gen.output):
            index = ctx.index_at(gen, err.offset)
            pre = gen.output[starts[index] : err.offset] if index < len(gen.output_ids) else ""
            out.append(Hit(err.offset, err.reason, _value_start(err.correct, pre), "arithmetic"))
        return out


class InstructionVerifier(_Check):
    name = "instructions"
    evidence = ("instructions",)
    kind = "instructions"

    def hits(self, gen, ctx):
        doc = gen.doc if isinstance(gen.doc, dict) else {}
        ids = doc.get("instruction_id_list") or []
        kwargs = [dict(k or {}) for k in doc.get("kwargs") or []]
        for kw, iid in zip(kwargs, ids):
            if iid == "combination:repeat_prompt" and not kw.get("prompt_to_repeat"):
                kw["prompt_to_repeat"] = doc.get("prompt", "")
        return [Hit(v.offset, v.reason, v.accept, v.instruction) for v in violations(gen.output, ids, kwargs)]


class CodeVerifier(_Check):
    name = "code"
    kind = "code"
    evidence = ("syntax",)

    def hits(self, gen, ctx):
        doc = gen.doc if isinstance(gen.doc, dict) else {}
        prefix = doc.get("prompt", "") if doc.get("entry_point") and isinstance(doc.get("prompt"), str) else ""
        problem = syntax_error(gen.output, prefix)
        return [] if problem is None else [Hit(problem.offset, problem.reason, None, "code")]


CHECKS = {c.kind: c for c in (ArithmeticVerifier, InstructionVerifier, CodeVerifier)}


class Verifier(_Check):
    name = "verifier"

    def hits(self, gen, ctx):
        return CHECKS[ctx.kind or kind_of_doc(gen.doc)]().hits(gen, ctx)


def verifier_hits(gen: Generation, ctx: Context) -> list[Hit]:
    """The applicable verifier's hits (no model needed), earliest first."""
    return sorted(Verifier().hits(gen, ctx), key=lambda h: h.offset)
