"""``reference``: a second (stronger) model of the same tokenizer reads the failed output, teacher-forced after the
prompt; the target is the first output token whose log-prob under the reference falls more than ``gap`` nats below
the reference's own best choice there. No LRP runs on the reference.

Where the task has a gold solution, the reference reads it first (``gold_in_context``, the default): the solution is
put before the question's line of the prompt (inside the user turn of a chat prompt), so the reference is surprised
by a step that contradicts the solution — a wrong plan, a wrong rule — rather than by a different wording, which it
expects either way. On the hand-annotated dev set this is what reaches errors written as prose (benchmarks/RESULTS.md).

Contrast: the reference's own choice when it is among the evaluated model's top-k there (the paper's stronger-sibling
rule), else the evaluated model's best alternative (the record says which).

``hindsight``: the same reading by the evaluated model itself (no second model): its output is its own greedy choice
without the solution, so a token it puts far below its choice once it has read the solution is one the solution
contradicts. It fires rarely (a small model barely uses a solution in its context), and where it fires it is
usually right; it needs a gold solution.
"""

from __future__ import annotations

from ..reference_model import check_same_tokenizer, nats
from .context import Context, scan
from .trajectory import question_of
from .types import Generation, Location, NotFound

#: how the gold solution is introduced to the reference
GOLD_NOTE = "A correct solution, for reference:\n{gold}\n\n"


def question_line_start(gen: Generation, ctx: Context) -> int:
    """The prompt token index where the line holding the question starts (the last such line: after few-shot
    examples, the question asked); 0 when the question is not found in the prompt."""
    ids = list(gen.prompt_ids)
    text = ctx.decode(ids)
    question = question_of(gen).strip()
    at = text.rfind(question[:40]) if question and question != gen.prompt.strip() else -1
    if at < 0:
        return 0
    line = text.rfind("\n", 0, at) + 1
    lo, hi = 0, len(ids)  # the largest j whose decoded prefix ends at or before the line's start
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(ctx.decode(ids[:mid])) <= line:
            lo = mid
        else:
            hi = mid - 1
    return lo


def with_gold(gen: Generation, ctx: Context) -> tuple[int, ...]:
    """The prompt ids with the gold solution put before the question's line (unchanged without gold)."""
    if not (gen.gold or "").strip() or ctx.encode is None:
        return gen.prompt_ids
    j = question_line_start(gen, ctx)
    note = ctx.encode(GOLD_NOTE.format(gold=gen.gold.strip()))
    return gen.prompt_ids[:j] + tuple(note) + gen.prompt_ids[j:]


class ReferenceLocator:
    name = "reference"
    needs = ("reference",)
    evidence = ("reference", "gold")  # without gold_in_context: ("reference",) (set per instance)
    who = "the reference model"
    whose = "the reference model's choice"

    def __init__(self, model=None, tokenizer=None, evaluated_tokenizer=None, gap: float = 5.0,
                 gold_in_context: bool = True):
        """``tokenizer`` and ``evaluated_tokenizer`` are compared here, before evaluation starts."""
        if model is None:
            raise ValueError("the reference locator needs a reference model (a Hugging Face causal LM): model=...")
        if tokenizer is not None and evaluated_tokenizer is not None:
            check_same_tokenizer(tokenizer, evaluated_tokenizer)
        self.model, self.gap, self.gold_in_context = model, nats(gap, f"{self.name} gap"), bool(gold_in_context)
        self.evidence = ("reference", "gold") if self.gold_in_context else ("reference",)

    def _reader(self, ctx: Context):
        return self.model

    def locate(self, gen: Generation, ctx: Context) -> Location:
        if not gen.output_ids:
            raise NotFound("empty output")
        prompt = with_gold(gen, ctx) if self.gold_in_context else gen.prompt_ids
        informed = prompt != gen.prompt_ids
        s = scan(self._reader(ctx), prompt, gen.output_ids, k=1, keep_cache=False)
        gaps = (s.topk_logprobs[:, 0] - s.chosen_logprobs).tolist()
        i = next((j for j, g in enumerate(gaps) if g > self.gap), None)
        who = self.who + (" (reading the gold solution first)" if informed else "")
        if i is None:
            raise NotFound(f"{who} finds no output token more than {self.gap:g} nats below its best choice")
        best = int(s.topk_ids[i, 0])
        contrast, how = None, "no model to rank alternatives"
        if ctx.model is not None:
            own = [t for t in ctx.scan(gen).topk_ids[i].tolist() if t != gen.output_ids[i] and t not in ctx.eos_ids]
            if best in own:
                contrast, how = best, f"{self.whose} (in the evaluated model's top-k)"
            elif own:
                contrast, how = own[0], (f"the evaluated model's best alternative ({self.whose} "
                                         f"{ctx.decode([best])!r} is not in its top-k)")
        reason = (f"{who} puts output token {i} ({ctx.decode([gen.output_ids[i]])!r}) "
                  f"{gaps[i]:.2f} nats below its choice {ctx.decode([best])!r}; contrast = {how}")
        cand = ctx.candidate(gen, i, f"{self.name} gap")
        return Location(i, gen.output_ids[i], contrast, self.name, reason,
                        output_offset=ctx.offsets(gen.output_ids)[i], candidates=[cand])


class HindsightLocator(ReferenceLocator):
    """``hindsight``: the evaluated model itself as the reference, reading the gold solution first. Its own greedy
    output is what it preferred without the solution; the first token it would now put far below its choice is one
    the solution contradicts, and that choice (among its top-k) is the contrast. Needs a gold solution; no second
    model."""

    name = "hindsight"
    needs = ("model",)
    evidence = ("model", "gold")
    who = "the evaluated model"
    whose = "its choice after reading the solution"

    def __init__(self, gap: float = 5.0):
        self.model, self.gap, self.gold_in_context = None, nats(gap, "hindsight gap"), True

    def _reader(self, ctx: Context):
        return ctx.model

    def locate(self, gen: Generation, ctx: Context) -> Location:
        if not (gen.gold or "").strip():
            raise NotFound("no gold solution to read first")
        if ctx.model is None:
            raise NotFound("no model in the locate context")
        return super().locate(gen, ctx)
