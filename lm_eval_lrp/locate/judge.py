"""``judge``: language-model judges read the failed output and name its first wrong step (the paper's LLM judges).

The output is split into numbered steps (lines, and sentences within a line); each judge gets the problem, the gold
solution when the task has one, and the numbered steps, and answers with the number of the first step that contains
an error. The step named by most judges wins (a tie: the earliest). Inside that step the explained token is its
decision point — the token whose best alternative the evaluated model found most probable — and that alternative is
the contrast (as in ``trajectory``).

The judges are a plain callable ``ask(messages) -> [answer, ...]`` (one answer per judge); the seam builds it from
lm-eval's own API model classes (``--lrp_judge model=...,base_url=...``) or runs a local transformers chat model
(``--lrp_judge pretrained=...``, :mod:`.local_judge`), so this module never talks to a server itself.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable

from .context import Context
from .span import span_location
from .trajectory import question_of
from .types import Generation, LocateError, Location, NotFound

_STEP = re.compile(r"[^\n]*?(?:[.!?](?=\s+[A-Z\\$(\[])|\n|$)")
INSTRUCTION = ("You check a solution step by step. Reply with the number of the FIRST step that contains an error "
               "(a wrong number, a wrong operation, a misread of the problem, a wrong plan or a wrong line of code). "
               "Reply with the number only.")


def parse_judges(spec: str) -> list[dict]:
    """``"model=a,base_url=u;pretrained=p"`` (commas may travel as ``|``) → one kwargs dict per judge: a server
    (``model=``, ``base_url=``) or a local transformers chat model (``pretrained=``)."""
    judges = []
    for part in str(spec).replace("|", ",").split(";"):
        if not part.strip():
            continue
        kwargs = {}
        for item in part.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"lrp_judge: {item!r} is not key=value (a judge is 'model=NAME,base_url=URL')")
            kwargs[key.strip()] = value.strip()
        if "pretrained" in kwargs:
            if "base_url" in kwargs:
                raise ValueError(f"lrp_judge: {part!r} names both a local model (pretrained=) and a server (base_url=)")
        elif "base_url" not in kwargs or "model" not in kwargs:
            raise ValueError(f"lrp_judge: {part!r} needs model= and base_url= (an OpenAI-compatible chat endpoint), "
                             "or pretrained=PATH (a local transformers chat model)")
        judges.append(kwargs)
    if not judges:
        raise ValueError("lrp_judge is empty: give model=NAME,base_url=URL (several separated by ';')")
    return judges


def steps(text: str) -> list[tuple[int, int]]:
    """[start, end) of each non-blank step: lines, split further after a sentence end."""
    out = []
    for m in _STEP.finditer(text):
        a, b = m.start(), m.end()
        chunk = text[a:b]
        if chunk.strip():
            lead = len(chunk) - len(chunk.lstrip())
            out.append((a + lead, a + len(chunk.rstrip())))
    return out


def messages_for(gen: Generation, spans: list[tuple[int, int]]) -> list[dict]:
    numbered = "\n".join(f"[{i}] {gen.output[a:b]}" for i, (a, b) in enumerate(spans, start=1))
    parts = [f"Problem:\n{question_of(gen)}"]
    if gen.gold:
        parts.append(f"A correct solution:\n{gen.gold}")
    parts.append(f"The solution to check, in numbered steps:\n{numbered}")
    parts.append("Which step is the first one with an error? Reply with its number only.")
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": "\n\n".join(parts)}]


def vote(answers: list[str], n_steps: int) -> tuple[int | None, Counter]:
    """The step most judges named (1-based; a tie goes to the earliest), and the count of every valid answer."""
    counts: Counter = Counter()
    for answer in answers:
        m = re.search(r"\d+", answer or "")
        if m and 1 <= int(m.group()) <= n_steps:
            counts[int(m.group())] += 1
    if not counts:
        return None, counts
    best = max(counts.values())
    return min(k for k, v in counts.items() if v == best), counts


class JudgeLocator:
    name = "judge"
    needs = ("judge",)
    evidence = ("judge", "gold")  # each judge is shown the gold solution where the task has one

    def __init__(self, ask: Callable[[list[dict]], list[str]] | None = None):
        if ask is None:
            raise ValueError("the judge locator needs judges: --lrp_judge model=NAME,base_url=URL[;...]")
        self.ask = ask

    def locate(self, gen: Generation, ctx: Context) -> Location:
        spans = steps(gen.output)
        if not spans or not gen.output_ids:
            raise NotFound("empty output")
        try:
            answers = list(self.ask(messages_for(gen, spans)))
        except Exception as err:  # noqa: BLE001 - a server that fails is an error for this document, the run goes on
            raise LocateError(f"the judges could not be asked: {type(err).__name__}: {err}") from err
        step, counts = vote(answers, len(spans))
        if step is None:
            raise NotFound(f"no judge named a step (answers: {answers!r})")
        a, b = spans[step - 1]
        n = len(gen.output_ids)
        positions = ctx.tokens_in(gen, a, b) or [i for i in [ctx.index_at(gen, a)] if i < n]
        if not positions:
            raise NotFound("the judged step lies past the output's tokens")
        index, contrast = ctx.decision_point(gen, positions)
        votes = ", ".join(f"step {k}: {v}" for k, v in sorted(counts.items()))
        reason = (f"{counts[step]} of {len(answers)} judges name step {step} ({gen.output[a:b][:80]!r}) as the first "
                  f"with an error ({votes}); explained: its decision point, contrast = the model's best alternative")
        return span_location(gen, ctx, self.name, positions, index, contrast, reason, f"step {step}")
