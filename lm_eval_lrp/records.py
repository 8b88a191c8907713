"""One attribution record (a JSON-ready dict) from a failure, its case and the engine's explanation."""

from __future__ import annotations

import torch

from .failures import Case, Failure


def token_strings(tokenizer, ids: list[int]) -> list[str]:
    return [tokenizer.decode([i]) for i in ids]


def char_spans(tokenizer, text: str, ids: list[int]) -> list[tuple[int, int]] | None:
    """Character span of each of ``ids`` in ``text`` (None when the tokenisation cannot be aligned)."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError):
        return None
    own, offsets = enc["input_ids"], enc["offset_mapping"]
    shift = len(ids) - len(own)
    if shift < 0 or ids[shift:] != own:  # a BOS (or other prefix) may precede the text's own tokens
        return None
    return [(0, 0)] * shift + [tuple(o) for o in offsets]


def segment_sums(segments, spans, relevance: torch.Tensor, n_prompt: int) -> dict:
    """Relevance summed over each labelled prompt segment; tokens after the prompt are the answer so far."""
    out: dict[str, float] = {}
    if spans is not None:
        for seg in segments:
            total = 0.0
            for i, (a, b) in enumerate(spans[:n_prompt]):
                if b > a and a >= seg.start and b <= seg.end:
                    total += float(relevance[i])
            out[seg.label] = out.get(seg.label, 0.0) + total
    if relevance.numel() > n_prompt:
        out["answer_so_far"] = out.get("answer_so_far", 0.0) + float(relevance[n_prompt:].sum())
    return out


def base_record(failure: Failure, case: Case | None, tokenizer) -> dict:
    sample = failure.sample
    record = {
        "task": failure.task,
        "doc_id": failure.doc_id,
        "doc_hash": sample.get("doc_hash"),
        "prompt_hash": sample.get("prompt_hash"),
        "filter": sample.get("filter"),
        "kind": failure.kind,
        "metric": failure.metric,
        "metrics": failure.metrics,
    }
    if case is not None:
        record.update(prompt=case.prompt, model_output=case.model_output, gold=case.gold)
    return record


def explained_record(base: dict, case: Case, explanation, tokenizer, segments, seconds: float) -> dict:
    """The record of one explained failure; ``seconds`` is the wall time so far, split in ``timings``."""
    rel = explanation.input_relevance
    # lm-eval moves the context's trailing white space into the continuation before tokenising (_encode_pair)
    prompt = case.prompt.rstrip()
    spans = char_spans(tokenizer, prompt, case.ids[: case.n_prompt]) if prompt and not case.truncated else None
    return {
        **base,
        "status": "attributed",
        "rule": explanation.rule,
        "tokens": token_strings(tokenizer, case.ids),
        "token_ids": case.ids,
        "n_prompt_tokens": case.n_prompt,
        "truncated_tokens": case.truncated,
        "position": case.position,
        "target": {"id": case.target, "token": tokenizer.decode([case.target]), "logit": explanation.target_logit},
        "contrast": {"id": case.contrast, "token": tokenizer.decode([case.contrast]), "logit": explanation.contrast_logit},
        "delta": explanation.delta,
        "topk": [{"id": i, "token": tokenizer.decode([i]), "logit": v} for i, v in explanation.topk],
        "input_relevance": [round(float(x), 7) for x in rel],
        "segments": segment_sums(segments, spans, rel, case.n_prompt),
        "conservation": explanation.conservation,
        "seconds": round(seconds, 4),
        "timings": {k: round(v, 4) for k, v in explanation.seconds.items()},
    }


def skipped_record(base: dict, reason: str, case: Case | None = None, tokenizer=None, delta: float | None = None) -> dict:
    record = {**base, "status": "skipped", "reason": reason}
    if case is not None and case.target is not None and tokenizer is not None:
        record["target"] = {"id": case.target, "token": tokenizer.decode([case.target])}
        record["contrast"] = {"id": case.contrast, "token": tokenizer.decode([case.contrast])}
    if delta is not None:
        record["delta"] = delta
    return record


def error_record(base: dict, reason: str, advice: str | None = None) -> dict:
    record = {**base, "status": "error", "reason": reason}
    if advice:
        record["advice"] = advice
    return record
