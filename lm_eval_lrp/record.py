"""The attribution record: one JSON object per failure, with a format version, built and read through this module.

A :class:`Record` is a ``dict`` (the JSON as written: ``dict(record)``, ``record["delta"]``) with typed accessors
and a schema check. ``format_version`` 2 is written now; records without one (written before versions existed) are
version 1 and load unchanged. Statuses: ``attributed`` (a clean case), ``skipped`` (with ``reason``; a weak
preference keeps its relevance and is marked ``weak``), ``error`` (with ``reason`` and, where known, ``advice``).
"""

from __future__ import annotations

from .lrp.target import Contrast
from .segments import char_spans, segment_sums
from .token_text import token_texts

FORMAT_VERSION = 2
STATUSES = ("attributed", "skipped", "error")
_REQUIRED = ("task", "doc_id", "status")
#: the records files of a run folder: ``attributions_<task>_<time>.jsonl`` (one per task and invocation)
RECORD_GLOB = "attributions_*.jsonl"


class RecordFormatError(ValueError):
    """A line of a records file that is not an attribution record."""


class Record(dict):
    @classmethod
    def load(cls, obj) -> "Record":
        """Check ``obj`` (a parsed JSON line) and wrap it; raises :class:`RecordFormatError` naming what is wrong."""
        if not isinstance(obj, dict):
            raise RecordFormatError(f"expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in _REQUIRED if k not in obj]
        if missing:
            raise RecordFormatError(f"missing {', '.join(missing)}")
        if obj["status"] not in STATUSES:
            raise RecordFormatError(f"unknown status {obj['status']!r}")
        version = obj.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise RecordFormatError(f"format_version {version!r} is newer than this lm-eval-lrp reads ({FORMAT_VERSION}); upgrade")
        if not isinstance(obj["doc_id"], int) or isinstance(obj["doc_id"], bool):
            raise RecordFormatError(f"doc_id {obj['doc_id']!r} is not an integer")
        return cls(obj)

    @property
    def format_version(self) -> int:
        return int(self.get("format_version", 1))

    @property
    def task(self) -> str:
        return self["task"]

    @property
    def doc_id(self) -> int:
        return int(self["doc_id"])

    @property
    def status(self) -> str:
        return self["status"]

    @property
    def delta(self) -> float | None:
        return self.get("delta")

    @property
    def weak(self) -> bool:
        return bool(self.get("weak"))

    @property
    def explained(self) -> Contrast | None:
        """What the record explains (None for records without tokens)."""
        if not self.get("token_ids") or not isinstance(self.get("target"), dict) or self.get("position") is None:
            return None
        contrast = self.get("contrast") or {}
        return Contrast(self["token_ids"], self["position"], self["target"]["id"], contrast.get("id"))


# --- building records ---------------------------------------------------------------------------------------


def token_strings(tokenizer, ids) -> list[str]:
    return token_texts(tokenizer, ids)


def base_record(failure, case=None) -> Record:
    record = Record(
        format_version=FORMAT_VERSION,
        task=failure.task,
        doc_id=failure.doc_id,
        doc_hash=failure.doc_hash,
        prompt_hash=failure.prompt_hash,
        filter=failure.filter,
        kind=failure.kind,
        metric=failure.metric,
        metrics=failure.metrics,
    )
    if case is not None:
        record.update(prompt=case.prompt, model_output=case.model_output, gold=case.gold)
        if case.note:
            record["note"] = case.note
    return record


#: ``explained_record(spans=...)`` default: the spans are not known yet, tokenise the prompt
TOKENISE = object()


def _case_tokens(case, tokenizer) -> dict:
    """What was (or would have been) explained: tokens, position, target and contrast, truncation."""
    if case is None or not case.ids:
        return {}
    out = {
        "tokens": token_strings(tokenizer, case.ids),
        "token_ids": list(case.ids),
        "n_prompt_tokens": case.n_prompt,
        "truncated_tokens": case.truncated,
        "position": case.position,
    }
    if case.target is not None:
        out["target"] = {"id": case.target, "token": token_texts(tokenizer, [case.target])[0]}
    if case.contrast is not None:
        out["contrast"] = {"id": case.contrast, "token": token_texts(tokenizer, [case.contrast])[0]}
    return out


def prompt_spans_wanted(case) -> str | None:
    """The text whose character spans a record's segments need (the prompt as tokenised), or None (no spans)."""
    # lm-eval moves the context's trailing white space into the continuation before tokenising (_encode_pair)
    prompt = case.prompt.rstrip()
    return prompt if prompt and not case.truncated else None


def explained_record(base: dict, case, explanation, tokenizer, segments, seconds: float, spans=TOKENISE) -> Record:
    """The record of one explained failure; ``seconds`` is the wall time so far, split in ``timings``. ``spans``:
    the prompt tokens' character spans when already known (:func:`lm_eval_lrp.segments.char_spans_many` over
    :func:`prompt_spans_wanted`), else the prompt is tokenised here."""
    rel = explanation.input_relevance
    if spans is TOKENISE:
        prompt = prompt_spans_wanted(case)
        spans = char_spans(tokenizer, prompt, case.ids[: case.n_prompt]) if prompt is not None else None
    record = Record(base, status="attributed", rule=explanation.rule, **_case_tokens(case, tokenizer))
    record["target"]["logit"] = explanation.target_logit
    record["contrast"]["logit"] = explanation.contrast_logit
    record.update(
        delta=explanation.delta,
        topk=[{"id": i, "token": t, "logit": v}
              for (i, v), t in zip(explanation.topk, token_texts(tokenizer, [i for i, _ in explanation.topk]))],
        input_relevance=[round(x, 7) for x in rel.tolist()],
        segments=segment_sums(segments, spans, rel, case.n_prompt),
        conservation=explanation.conservation,
        seconds=round(seconds, 4),
        timings={k: round(v, 4) for k, v in explanation.seconds.items()},
    )
    return record


def weak_record(record: Record, min_delta: float) -> Record:
    """An explained record whose Δℓ is at most the clean-case threshold: kept, marked weak, out of the statistics."""
    delta = record["delta"]
    if delta < 0:
        reason = ("token-level contrast favours the gold (delta < 0): the choice was decided later in the "
                  "continuation; see the sequence-level contrast")
    else:
        reason = f"weak preference (delta <= {min_delta:g})"
    return Record(record, status="skipped", reason=reason, weak=True)


def skipped_record(base: dict, reason: str, case=None, tokenizer=None) -> Record:
    record = Record(base, status="skipped", reason=reason)
    if tokenizer is not None:
        record.update(_case_tokens(case, tokenizer))
    return record


def error_record(base: dict, reason: str, advice: str | None = None, case=None, tokenizer=None) -> Record:
    record = Record(base, status="error", reason=reason)
    if tokenizer is not None:
        record.update(_case_tokens(case, tokenizer))
    if advice:
        record["advice"] = advice
    return record
