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

Records whose run wrote no segment sums (the prompt could not be aligned with its tokens) can be given sums
derived here, from the prompt, the task configuration lm-eval recorded and the token strings:
:func:`derived_segments`.
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


def describe_thresholds(th: Thresholds | None = None) -> list[str]:
    """The labels' definitions with the thresholds in force, one line each (shown in the report)."""
    th = th or Thresholds()
    return [
        f"URT — the relevant segments ({', '.join(th.relevant)}) support the gold token with less than "
        f"{th.urt_max_support:.0%} of Σ|R| (or push towards the wrong token);",
        f"OIT — the irrelevant parts ({', '.join(th.irrelevant)}, special tokens) spend at least "
        f"{th.oit_min_share:.0%} of Σ|R| pushing towards the wrong token;",
        "URT+OIT — both; none — neither; n/a — not attributed or no segment labels to judge by.",
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


def prompt_segments(record: dict, task_config: dict | None = None, n_shot: int | None = None) -> list:
    """Labelled character spans (``task_hooks.base.Segment``) of ``record["prompt"]``.

    HumanEval-like prompts (task name ``humaneval*``): ``signature`` up to the docstring, ``docstring`` after.
    Otherwise: ``instruction`` = the task's description when the prompt starts with it; with ``n_shot`` > 0,
    ``fewshot`` = everything up to the last few-shot delimiter; ``query`` = the rest.
    """
    from task_hooks.base import Segment

    prompt = record.get("prompt") or ""
    if not prompt:
        return []
    if str(record.get("task") or "").startswith("humaneval"):
        start = prompt.find('"""')
        if start < 0:
            start = prompt.find("'''")
        if start > 0:
            return [Segment("signature", 0, start), Segment("docstring", start, len(prompt))]
    cfg = task_config or {}
    description = cfg.get("description") or ""
    if not isinstance(description, str) or "{{" in description:
        description = ""
    d_end = len(description) if description and prompt.startswith(description) else 0
    segs = [Segment("instruction", 0, d_end)] if d_end else []
    q_start = d_end
    if n_shot:
        delim = cfg.get("fewshot_delimiter")
        delim = "\n\n" if not isinstance(delim, str) or not delim else delim
        cut = prompt.rfind(delim, d_end)
        if cut >= d_end:
            q_start = cut + len(delim)
            segs.append(Segment("fewshot", d_end, q_start))
    if q_start < len(prompt):
        segs.append(Segment("query", q_start, len(prompt)))
    return segs


def token_spans(record: dict) -> list[tuple[int, int]] | None:
    """Character span of each prompt token, from the token strings laid end to end over the prompt.

    Special tokens absent from the prompt get empty spans; whitespace left over at the end (lm-eval moves a
    context's trailing whitespace into the continuation) is allowed. None when the strings do not match the prompt.
    """
    prompt = record.get("prompt") or ""
    tokens = record.get("tokens") or []
    if not prompt or not tokens or record.get("truncated_tokens"):
        return None
    n_prompt = int(record.get("n_prompt_tokens") or len(tokens))
    spans, offset = [], 0
    for tok in tokens[:n_prompt]:
        if tok and prompt.startswith(tok, offset):
            spans.append((offset, offset + len(tok)))
            offset += len(tok)
        elif is_special_token(tok) or tok == "":
            spans.append((offset, offset))
        else:
            return None
    return spans if not prompt[offset:].strip() else None


def derived_segments(record: dict, task_config: dict | None = None, n_shot: int | None = None,
                     relevance: list[float] | None = None) -> dict:
    """Segment sums like the harness's, from :func:`prompt_segments` and :func:`token_spans` ({} if unaligned)."""
    rel = list(relevance if relevance is not None else record.get("input_relevance") or [])
    spans = token_spans(record)
    if spans is None or not rel:
        return {}
    out: dict[str, float] = {}
    for seg in prompt_segments(record, task_config, n_shot):
        out[seg.label] = out.get(seg.label, 0.0) + sum(
            float(rel[i] or 0.0) for i, (a, b) in enumerate(spans) if b > a and a >= seg.start and b <= seg.end)
    n_prompt = len(spans)
    if len(rel) > n_prompt:
        out["answer_so_far"] = out.get("answer_so_far", 0.0) + sum(float(x or 0.0) for x in rel[n_prompt:])
    return out
