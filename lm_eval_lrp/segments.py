"""The one prompt segmenter: labelled character spans of a prompt, token spans, and relevance summed per segment.

Labels: ``instruction`` (the task's description), ``fewshot`` (examples before the document), ``query`` (this
document), ``answer_so_far`` (prompt text after the query, and every explained token after the prompt); code
prompts: ``signature`` and ``docstring``. The harness (through the task hooks), the records, the failure patterns,
``compare`` and the report all label prompts here, so their segment sums agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

#: the order segments are listed in (reports, compare)
SEGMENT_ORDER = ("instruction", "fewshot", "signature", "docstring", "query", "answer_so_far")

SPECIAL_TOKEN = re.compile(
    r"^(<\|[^<>|]{1,40}\|>|<｜[^<>]{1,40}｜>|</?s>|<(?:bos|eos|pad|unk|mask|cls|sep|start_of_turn|end_of_turn)>"
    r"|\[(?:CLS|SEP|PAD|BOS|EOS|UNK|MASK)\])$",
    re.IGNORECASE,
)


def is_special_token(token: str | None, extra: Iterable[str] = ()) -> bool:
    """A special token by its string (BOS/EOS/chat markers), or one of ``extra``."""
    if token is None:
        return False
    return token in set(extra) or bool(SPECIAL_TOKEN.match(token.strip()))


@dataclass(frozen=True)
class Segment:
    """A labelled character span ``[start, end)`` of the prompt."""

    label: str
    start: int
    end: int


def _docstring_split(prompt: str) -> list[Segment]:
    start = prompt.find('"""')
    if start < 0:
        start = prompt.find("'''")
    return [Segment("signature", 0, start), Segment("docstring", start, len(prompt))] if start > 0 else []


def label_prompt(
    prompt: str,
    *,
    query: str | None = None,
    description: str = "",
    fewshot_delimiter: str | None = None,
    n_shot: int | None = None,
    code: bool = False,
) -> list[Segment]:
    """Segments of ``prompt``.

    With ``query`` (the document's own text, ``doc_to_text``): instruction | fewshot | query | answer_so_far, the
    query found as the last occurrence in the prompt. Without it (a stored record read back), the few-shot part
    ends at the last ``fewshot_delimiter`` when ``n_shot`` > 0. ``code``: signature | docstring.
    """
    if not prompt:
        return []
    if code:
        segs = _docstring_split(prompt)
        if segs:
            return segs
    if not isinstance(description, str) or "{{" in description:
        description = ""
    d_end = len(description) if description and prompt.startswith(description) else 0
    if not d_end and prompt.startswith("The following are multiple choice questions"):
        first = prompt.find("\n\n")  # MMLU's subject line, when the task has no description of its own
        d_end = first + 2 if first > 0 else 0
    out = [Segment("instruction", 0, d_end)] if d_end else []
    if isinstance(query, str) and query:
        q_start = prompt.rfind(query)
        if q_start < d_end:
            return [] if q_start < 0 else out + [Segment("query", q_start, q_start + len(query))]
        if q_start > d_end:
            out.append(Segment("fewshot", d_end, q_start))
        out.append(Segment("query", q_start, q_start + len(query)))
        if q_start + len(query) < len(prompt):
            out.append(Segment("answer_so_far", q_start + len(query), len(prompt)))
        return out
    q_start = d_end
    if n_shot:
        delim = fewshot_delimiter if isinstance(fewshot_delimiter, str) and fewshot_delimiter else "\n\n"
        cut = prompt.rfind(delim, d_end)
        if cut >= d_end:
            q_start = cut + len(delim)
            out.append(Segment("fewshot", d_end, q_start))
    if q_start < len(prompt):
        out.append(Segment("query", q_start, len(prompt)))
    return out


def char_spans(tokenizer, text: str, ids: Sequence[int]) -> list[tuple[int, int]] | None:
    """Character span of each of ``ids`` in ``text`` from the tokenizer's offsets (None when they do not align)."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError):
        return None
    return _aligned(enc["input_ids"], enc["offset_mapping"], ids)


def char_spans_many(tokenizer, texts: Sequence[str], ids: Sequence[Sequence[int]]) -> list[list[tuple[int, int]] | None]:
    """:func:`char_spans` of several texts from one call of the tokenizer (a batch's prompts: one call, not one each)."""
    if not texts:
        return []
    try:
        enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError):
        return [None] * len(texts)
    return [_aligned(own, offsets, i) for own, offsets, i in zip(enc["input_ids"], enc["offset_mapping"], ids)]


def _aligned(own: Sequence[int], offsets, ids: Sequence[int]) -> list[tuple[int, int]] | None:
    own, ids = list(own), list(ids)
    shift = len(ids) - len(own)
    if shift < 0 or ids[shift:] != own:  # a BOS (or other prefix) may precede the text's own tokens
        return None
    return [(0, 0)] * shift + [tuple(o) for o in offsets]


def token_spans(prompt: str, tokens: Sequence[str]) -> list[tuple[int, int]] | None:
    """Character spans from the token strings laid end to end over ``prompt`` (no tokenizer needed).

    Special tokens absent from the prompt get empty spans; trailing white space may be left over (lm-eval moves a
    context's trailing white space into the continuation). None when the strings do not match the prompt."""
    spans, offset = [], 0
    for tok in tokens:
        if tok and prompt.startswith(tok, offset):
            spans.append((offset, offset + len(tok)))
            offset += len(tok)
        elif is_special_token(tok) or tok == "":
            spans.append((offset, offset))
        else:
            return None
    return spans if not prompt[offset:].strip() else None


def segment_sums(segments: Sequence[Segment], spans, relevance, n_prompt: int) -> dict[str, float]:
    """Relevance summed over each segment (tokens wholly inside it); tokens after the prompt are the answer so far."""
    rel = [float(x or 0.0) for x in (relevance.tolist() if isinstance(relevance, torch.Tensor) else relevance)]
    out: dict[str, float] = {}
    if spans is not None:
        for seg in segments:
            total = sum(rel[i] for i, (a, b) in enumerate(spans[:n_prompt]) if b > a and a >= seg.start and b <= seg.end)
            out[seg.label] = out.get(seg.label, 0.0) + total
    if len(rel) > n_prompt:
        out["answer_so_far"] = out.get("answer_so_far", 0.0) + sum(rel[n_prompt:])
    return out


def record_spans(record: dict, tokenizer=None) -> list[tuple[int, int]] | None:
    """Token spans of a stored record's prompt tokens (tokenizer offsets when given, else the token strings)."""
    prompt = (record.get("prompt") or "").rstrip()
    ids, tokens = record.get("token_ids") or [], record.get("tokens") or []
    if not prompt or record.get("truncated_tokens") or (not ids and not tokens):
        return None
    n_prompt = int(record.get("n_prompt_tokens") or len(ids or tokens))
    spans = char_spans(tokenizer, prompt, ids[:n_prompt]) if tokenizer is not None and ids else None
    return spans or token_spans(prompt, tokens[:n_prompt])


def record_prompt_segments(record: dict, task_config: dict | None = None, n_shot: int | None = None, *,
                           code: bool = False) -> list[Segment]:
    """Segments of a stored record's prompt, from the task configuration lm-eval recorded in the results JSON;
    ``code``: the task's prompts are a signature and docstring (the caller asks
    :func:`lm_eval_lrp.task_kinds.has_signature_prompt`)."""
    cfg = task_config or {}
    return label_prompt((record.get("prompt") or "").rstrip(), description=cfg.get("description") or "",
                        fewshot_delimiter=cfg.get("fewshot_delimiter"), n_shot=n_shot, code=code)


def record_segments(record: dict, relevance=None, *, tokenizer=None, task_config: dict | None = None,
                    n_shot: int | None = None, code: bool = False) -> dict[str, float]:
    """Segment sums of a stored record (``relevance`` defaults to its input relevance; ``code`` as in
    :func:`record_prompt_segments`); {} when unaligned."""
    rel = list(relevance if relevance is not None else record.get("input_relevance") or [])
    spans = record_spans(record, tokenizer)
    if spans is None or not rel:
        return {}
    n_prompt = int(record.get("n_prompt_tokens") or len(spans))
    return segment_sums(record_prompt_segments(record, task_config, n_shot, code=code), spans, rel, n_prompt)
