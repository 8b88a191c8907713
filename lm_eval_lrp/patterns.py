"""Failure patterns of the paper (§4), computed from an attribution record: URT, OIT, both, or none.

Relevance signs follow the records: positive relevance pushes towards the wrong (target) token, negative towards
the correct (contrast) token. Let, over one record's input tokens,

* ``abs_total``  = Σ |R_i| over the non-special tokens;
* ``relevant``   = Σ of the segment sums of the *relevant* segments — the parts that should favour the gold token:
  ``query`` and ``answer_so_far`` (HumanEval: ``signature`` and ``docstring`` are its query);
* ``support``    = −relevant / abs_total: the share of all relevance by which the relevant segments favour the
  gold token (negative when they favour the wrong one);
* ``irrelevant`` = Σ max(S, 0) over the *irrelevant* segments (``fewshot``, ``instruction``) plus, when
  ``count_special``, Σ max(R_i, 0) over special tokens (BOS, chat markers: the attention sink);
* ``oit_share``  = irrelevant / Σ |R_i| over all tokens (special ones included when ``count_special``): the
  share of all relevance that parts which should not matter spend pushing towards the wrong token. (Dividing by
  Σ|R| rather than by the positive mass alone keeps a tiny push from counting as "overweighted".)

Labels (thresholds are the fields of :class:`Thresholds`, all parameters):

* **URT** (relevant tokens underweighted) when ``support < urt_max_support`` (default 0.10): the query carries
  little relevance for the gold token, or relevance of the wrong sign;
* **OIT** (irrelevant tokens overweighted) when ``oit_share >= oit_min_share`` (default 0.30);
* **URT+OIT** when both hold, **none** when neither;
* **n/a** when a record cannot be judged: not attributed, no input relevance, or no relevant segment labelled
  (e.g. the prompt could not be aligned with its tokens).

Special tokens are recognised by their strings (``<|...|>``, ``<s>``, ``</s>``, ``<bos>``, …) or given explicitly.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

URT, OIT, BOTH, NONE, NA = "URT", "OIT", "URT+OIT", "none", "n/a"
LABELS = (URT, OIT, BOTH, NONE, NA)

_SPECIAL = re.compile(
    r"^(<\|[^<>|]{1,40}\|>|<｜[^<>]{1,40}｜>|</?s>|<(?:bos|eos|pad|unk|mask|cls|sep|start_of_turn|end_of_turn)>"
    r"|\[(?:CLS|SEP|PAD|BOS|EOS|UNK|MASK)\])$",
    re.IGNORECASE,
)


def is_special_token(token: str | None, extra: Iterable[str] = ()) -> bool:
    """A special token by its string (BOS/EOS/chat markers), or one of ``extra``."""
    if token is None:
        return False
    return token in set(extra) or bool(_SPECIAL.match(token.strip()))


def special_positions(record: dict, extra: Iterable[str] = ()) -> set[int]:
    """Positions of special tokens among ``record["tokens"]``."""
    extra = set(extra)
    return {i for i, t in enumerate(record.get("tokens") or []) if is_special_token(t, extra)}


@dataclass(frozen=True)
class Thresholds:
    """Parameters of :func:`classify` (see the module docstring)."""

    urt_max_support: float = 0.10
    oit_min_share: float = 0.30
    relevant: tuple[str, ...] = ("query", "answer_so_far", "signature", "docstring")
    irrelevant: tuple[str, ...] = ("fewshot", "instruction")
    count_special: bool = True
    special_tokens: tuple[str, ...] = ()


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


def classify(record: dict, thresholds: Thresholds | None = None, relevance: list[float] | None = None,
             segments: dict | None = None) -> Pattern:
    """The pattern of one record; ``relevance`` / ``segments`` override the record's own (e.g. another model's)."""
    th = thresholds or Thresholds()
    if record.get("status", "attributed") != "attributed":
        return Pattern(NA, reason=f"not attributed ({record.get('status')})")
    rel = list(relevance if relevance is not None else record.get("input_relevance") or [])
    segs = dict(segments if segments is not None else record.get("segments") or {})
    if not rel or any(r is None for r in rel):
        return Pattern(NA, reason="no input relevance")
    present = [s for s in th.relevant if s in segs]
    if not present:
        return Pattern(NA, reason="no relevant segment labelled (" + ", ".join(th.relevant) + ")")
    special = special_positions(record, th.special_tokens)
    abs_total = sum(abs(r) for i, r in enumerate(rel) if i not in special)
    relevant = sum(float(segs[s] or 0.0) for s in present)
    support = (-relevant / abs_total) if abs_total > 0 else 0.0
    abs_all = sum(abs(r) for i, r in enumerate(rel) if th.count_special or i not in special)
    irrelevant = sum(max(float(segs.get(s) or 0.0), 0.0) for s in th.irrelevant)
    if th.count_special:
        irrelevant += sum(max(rel[i], 0.0) for i in special)
    oit_share = min(irrelevant / abs_all, 1.0) if abs_all > 0 else 0.0
    urt = support < th.urt_max_support
    oit = irrelevant > 0 and oit_share >= th.oit_min_share
    label = BOTH if urt and oit else URT if urt else OIT if oit else NONE
    reasons = []
    if urt:
        names = "+".join(present)
        if support < 0:
            reasons.append(f"the relevant segments ({names}) push towards the wrong token (net {-support:.0%} of Σ|R|)")
        else:
            reasons.append(f"the relevant segments ({names}) support the gold token with only {support:.0%} of Σ|R|")
    if oit:
        reasons.append(f"irrelevant parts carry {oit_share:.0%} of the relevance towards the wrong token")
    parts = {"abs_total": abs_total, "relevant": relevant, "abs_all": abs_all, "irrelevant": irrelevant,
             "special_positions": sorted(special)}
    return Pattern(label, support, oit_share, "; ".join(reasons) or "neither pattern", parts)


def distribution(records: Iterable[dict], thresholds: Thresholds | None = None) -> Counter:
    """Counts of each label over the attributed records (others are not failures the patterns can judge)."""
    counts: Counter = Counter({k: 0 for k in LABELS})
    for r in records:
        if r.get("status") == "attributed":
            counts[classify(r, thresholds).label] += 1
    return counts


def distribution_by_task(records_by_task: dict[str, Iterable[dict]], thresholds: Thresholds | None = None) -> dict:
    return {task: dict(distribution(recs, thresholds)) for task, recs in records_by_task.items()}
