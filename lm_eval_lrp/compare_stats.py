"""The numbers ``compare`` reports over a group of compared cases: corrected rate, Δℓ medians, normalised segment
relevance of corrected and uncorrected cases, failure patterns, and the tokens that stay on top. Plain statistics
over case dicts (made by :func:`lm_eval_lrp.reexplain.compare_one`); no model.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter

from .segments import SEGMENT_ORDER



def is_finite(x) -> bool:
    """A finite number (None, NaN, infinities and non-numbers are left out of the statistics)."""
    return isinstance(x, (int, float)) and math.isfinite(x)


def mean_of(xs):
    """Mean of the finite numbers among ``xs`` (None when there are none)."""
    xs = [x for x in xs if is_finite(x)]
    return statistics.fmean(xs) if xs else None


def median_of(xs):
    """Median of the finite numbers among ``xs`` (None when there are none)."""
    xs = [x for x in xs if is_finite(x)]
    return statistics.median(xs) if xs else None


def aggregate(cases: list[dict]) -> dict:
    """Per-group numbers: corrected rate, median Δℓ, mean normalised segment relevance, patterns, top tokens."""
    out = {"cases": len(cases), "corrected": sum(c["corrected"] for c in cases)}
    out["corrected_rate"] = out["corrected"] / len(cases) if cases else None
    out["median_delta_a"] = median_of([c["delta_a"] for c in cases])
    out["median_delta_b"] = median_of([c["delta_b"] for c in cases])
    out["b_outcome"] = dict(Counter(c["b_outcome"] for c in cases))
    seg_names = [s for s in SEGMENT_ORDER if any(s in c["segments_a"] for c in cases)]
    segs = {}
    for group, flag in (("corrected", True), ("not_corrected", False)):
        sub = [c for c in cases if c["corrected"] == flag]
        segs[group] = {s: {"a": mean_of([c["segments_norm_a"].get(s) for c in sub if s in c["segments_norm_a"]]),
                           "b": mean_of([c["segments_norm_b"].get(s) for c in sub if s in c["segments_norm_b"]]),
                           "n": sum(1 for c in sub if s in c["segments_norm_a"])} for s in seg_names}
    out["segments_normalised"] = segs
    out["patterns_a"] = dict(Counter(c["pattern_a"] for c in cases))
    out["patterns_b_not_corrected"] = dict(Counter(c["pattern_b"] for c in cases if c["pattern_b"]))
    out["mean_top_overlap"] = mean_of([c["top_overlap"] for c in cases])
    kept: Counter = Counter()
    seen: Counter = Counter()
    for c in cases:  # per case, a token string counts once (kept: one of its positions is still top-5 on B)
        b_index = {x["index"] for x in c["top_tokens_b"]}
        by_token: dict = {}
        for x in c["top_tokens_a"]:
            by_token[x["token"]] = by_token.get(x["token"], False) or x["index"] in b_index
        for tok, still in by_token.items():
            seen[tok] += 1
            kept[tok] += still
    out["top_tokens_a"] = [{"token": t, "count": n, "still_top_on_b": kept[t]} for t, n in seen.most_common(15)]
    out["segments_match_run"] = sum(c["segments_match_run"] for c in cases)
    return out
