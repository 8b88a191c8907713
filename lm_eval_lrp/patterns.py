"""Failure patterns of the paper (§4), computed from an attribution record: URT, OIT, both, or none.

Relevance signs follow the records: positive relevance pushes towards the wrong (target) token, negative towards
the correct (contrast) token. Each input token is put in one of two groups:

* **irrelevant** tokens — parts that should not decide the answer: special tokens (BOS, chat markers: the
  attention sink), the few-shot examples and the task's instruction (``fewshot``, ``instruction`` segments), and
  the prompt's *format*: tokens without a letter or digit (punctuation, new lines) and the literal words of the
  task's prompt template (``Question``, ``Answer`` of ``"Question: {{question}}\nAnswer:"``, read from the task
  configuration lm-eval recorded);
* **relevant** tokens — every other token of the query and of the answer so far (HumanEval: signature, docstring).

Two numbers per record (special tokens are excluded from the maxima, as from the heatmap's normalisation):

* ``oit_share`` = Σ max(R_i, 0) over irrelevant tokens ÷ Σ max(R_i, 0) over all tokens: the share of the push
  towards the wrong token that comes from parts that should not matter;
* ``support`` = max over relevant tokens of (−R_i) ÷ max over all tokens of R_i: how strongly the most
  gold-supporting relevant token argues for the gold answer, relative to the strongest push towards the wrong one.

Labels (thresholds are the fields of :class:`Thresholds`):

* **URT** (relevant tokens underweighted) when ``support < urt_max_support`` (default 0.5): no relevant token
  argues for the gold token even half as strongly as the strongest token argues for the wrong one;
* **OIT** (irrelevant tokens overweighted) when ``oit_share >= oit_min_share`` (default 0.5): at least half of the
  push towards the wrong token comes from format, few-shot, instruction or special tokens;
* **URT+OIT** when both hold, **none** when neither;
* **n/a** when a record cannot be judged: not attributed, no input relevance, or its tokens cannot be placed in
  the prompt's segments (the prompt is not aligned with the tokens and has few-shot examples or an instruction).

The defaults were fixed before comparing with hand labels of real failures (``tests/data/pattern_labels.jsonl``);
the agreement is reported in ``benchmarks/RESULTS.md``. Special tokens are recognised by their strings
(``<|...|>``, ``<s>``, ``</s>``, ``<bos>``, …) or given explicitly.

Records whose run wrote no segment sums can be given sums derived here, from the prompt, the task configuration
lm-eval recorded and the token strings: :func:`lm_eval_lrp.segments.record_segments`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from .segments import is_special_token, record_prompt_segments, record_spans
from .task_kinds import has_signature_prompt

URT, OIT, BOTH, NONE, NA = "URT", "OIT", "URT+OIT", "none", "n/a"
LABELS = (URT, OIT, BOTH, NONE, NA)

def special_positions(record: dict, extra: Iterable[str] = ()) -> set[int]:
    """Positions of special tokens among ``record["tokens"]``."""
    extra = set(extra)
    return {i for i, t in enumerate(record.get("tokens") or []) if is_special_token(t, extra)}


@dataclass(frozen=True)
class Thresholds:
    """Parameters of :func:`classify` (see the module docstring)."""

    urt_max_support: float = 0.5
    oit_min_share: float = 0.5
    relevant: tuple[str, ...] = ("query", "answer_so_far", "signature", "docstring")
    irrelevant: tuple[str, ...] = ("fewshot", "instruction")
    special_tokens: tuple[str, ...] = ()
    template_words: tuple[str, ...] = ()  # added to those read from the task's doc_to_text


@dataclass
class Pattern:
    label: str
    support: float | None = None
    oit_share: float | None = None
    reason: str = ""
    parts: dict = field(default_factory=dict)

    @property
    def urt(self) -> bool:
        return self.label in (URT, BOTH)

    @property
    def oit(self) -> bool:
        return self.label in (OIT, BOTH)

    def as_dict(self) -> dict:
        return {"label": self.label, "support": self.support, "oit_share": self.oit_share, "reason": self.reason}


_WORD = re.compile(r"[^\W_]+")
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)


def template_words(task_config: dict | None) -> set[str]:
    """The literal words of a task's ``doc_to_text`` template (outside ``{{ }}``): the prompt's format words."""
    text = (task_config or {}).get("doc_to_text")
    if not isinstance(text, str) or "{{" not in text:
        return set()
    return {w.lower() for w in _WORD.findall(_JINJA.sub(" ", text))}


def token_groups(record: dict, task_config: dict | None = None, n_shot: int | None = None,
                 thresholds: Thresholds | None = None) -> list[str] | None:
    """Per token: ``"special"``, ``"irrelevant"`` or ``"relevant"`` (see the module docstring); None if unplaceable."""
    th = thresholds or Thresholds()
    tokens = [str(t) for t in record.get("tokens") or []]
    n_prompt = int(record.get("n_prompt_tokens") or len(tokens))
    special = special_positions(record, th.special_tokens)
    words = template_words(task_config) | {w.lower() for w in th.template_words}
    seg_of: list[str | None] = [None] * len(tokens)
    spans = record_spans(record)
    if spans is not None:
        segs = record_prompt_segments(record, task_config, n_shot, code=has_signature_prompt(record.get("task")))
        for i, (a, b) in enumerate(spans):
            for seg in segs:
                if b > a and a >= seg.start and b <= seg.end:
                    seg_of[i] = seg.label
                    break
    elif not n_shot and not (task_config or {}).get("description"):
        seg_of[:n_prompt] = ["query"] * min(n_prompt, len(tokens))  # a zero-shot prompt without instruction: all query
    else:
        return None
    for i in range(n_prompt, len(tokens)):
        seg_of[i] = "answer_so_far"
    out = []
    for i, tok in enumerate(tokens):
        word = tok.strip().lower()
        if i in special:
            out.append("special")
        elif seg_of[i] in th.irrelevant or not _WORD.search(tok) or word in words:
            out.append("irrelevant")
        elif seg_of[i] in th.relevant or seg_of[i] is None:
            out.append("relevant")
        else:
            out.append("irrelevant")
    return out


def classify(record: dict, thresholds: Thresholds | None = None, relevance: list[float] | None = None,
             segments: dict | None = None, task_config: dict | None = None, n_shot: int | None = None) -> Pattern:
    """The pattern of one record; ``relevance`` overrides the record's own (e.g. another model's on the same case).

    ``task_config`` / ``n_shot``: the task's configuration and number of shots as lm-eval recorded them (results
    JSON ``configs`` / ``n-shot``), to place tokens in segments and to know the template's words. ``segments`` is
    accepted for compatibility and not needed.
    """
    th = thresholds or Thresholds()
    if record.get("status", "attributed") != "attributed":
        return Pattern(NA, reason=f"not attributed ({record.get('status')})")
    rel = list(relevance if relevance is not None else record.get("input_relevance") or [])
    if not rel or any(r is None for r in rel):
        return Pattern(NA, reason="no input relevance")
    groups = token_groups(record, task_config, n_shot, th)
    if groups is None:
        return Pattern(NA, reason="the prompt's tokens could not be placed in its segments")
    groups = (groups + ["relevant"] * len(rel))[: len(rel)]
    positive = sum(max(r, 0.0) for r in rel)
    wrong_irr = sum(max(r, 0.0) for r, g in zip(rel, groups) if g in ("irrelevant", "special"))
    oit_share = wrong_irr / positive if positive > 0 else 0.0
    strongest_wrong = max((r for r, g in zip(rel, groups) if g != "special"), default=0.0)
    relevant = [i for i, g in enumerate(groups) if g == "relevant"]
    if not relevant:
        return Pattern(NA, reason="no relevant token in the query")
    best = max(relevant, key=lambda i: -rel[i])
    support = max(-rel[best], 0.0) / strongest_wrong if strongest_wrong > 0 else 1.0
    urt = support < th.urt_max_support
    oit = oit_share >= th.oit_min_share
    label = BOTH if urt and oit else URT if urt else OIT if oit else NONE
    tokens = record.get("tokens") or []
    name = repr(tokens[best]) if best < len(tokens) else f"#{best}"
    reasons = []
    if urt and rel[best] >= 0:
        reasons.append("no token of the query or answer so far argues for the gold answer")
    elif urt:
        reasons.append(f"the relevant token most in favour of the gold answer ({name}) has only {support:.0%} of the "
                       "strongest push towards the wrong one")
    if oit:
        reasons.append(f"format, few-shot, instruction and special tokens give {oit_share:.0%} of the push towards "
                       "the wrong token")
    parts = {"positive": positive, "irrelevant_positive": wrong_irr, "strongest_wrong": strongest_wrong,
             "best_relevant": best, "groups": dict(Counter(groups))}
    return Pattern(label, support, oit_share, "; ".join(reasons) or "neither pattern", parts)


def describe_thresholds(th: Thresholds | None = None) -> list[str]:
    """The labels' definitions with the thresholds in force, one line each (shown in the report)."""
    th = th or Thresholds()
    return [
        f"URT (relevant tokens underweighted): no token of the query or answer so far argues for the gold token with "
        f"even {th.urt_max_support:.0%} of the relevance of the strongest token pushing towards the wrong one;",
        f"OIT (irrelevant tokens overweighted): format tokens (punctuation, new lines, the template's words such as "
        f"'Question'/'Answer'), few-shot examples, the instruction and special tokens give at least "
        f"{th.oit_min_share:.0%} of all relevance pushing towards the wrong token;",
        "URT+OIT: both; none: neither; n/a: not attributed, or the tokens could not be placed in the prompt's segments.",
    ]


def distribution(records: Iterable[dict], thresholds: Thresholds | None = None) -> Counter:
    """Counts of each label over the attributed records (others are not failures the patterns can judge)."""
    counts: Counter = Counter({k: 0 for k in LABELS})
    for r in records:
        if r.get("status") == "attributed":
            counts[classify(r, thresholds).label] += 1
    return counts


def distribution_by_task(records_by_task: dict[str, Iterable[dict]], thresholds: Thresholds | None = None) -> dict:
    return {task: dict(distribution(recs, thresholds)) for task, recs in records_by_task.items()}


# --- segments derived from the prompt (for records without them) ----------------------------------------------
