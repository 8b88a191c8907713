"""What the report shows of a run, as data: per-task summaries, accuracy, segments and failure pattern of a record.

Reads artifacts only; never runs a model.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from ..artifacts import Run
from ..model_args import parse_model_args
from ..patterns import LABELS, Thresholds, classify, special_positions
from ..segments import record_segments
from ..task_kinds import has_signature_prompt



@dataclass
class TaskSummary:
    name: str
    metric: str | None
    accuracy: float | None
    failures: int
    attributed: int
    skipped: dict
    errors: dict
    clean_case_rate: float | None
    median_delta: float | None
    median_ratio: float | None
    patterns: dict = field(default_factory=dict)
    top_wrong_tokens: list = field(default_factory=list)
    error_count: int = 0
    deltas: list = field(default_factory=list)
    ratios: list = field(default_factory=list)
    segment_shares: dict = field(default_factory=dict)  # mean (segment sum ÷ Σ|R|) over attributed records
    locators: dict = field(default_factory=dict)
    top_tokens: list = field(default_factory=list)  # [(token, times in a record's top 3, records containing it)]
    flips: dict = field(default_factory=dict)  # per ranking: records, mean tokens masked until the flip, flip rate
    confidence: dict = field(default_factory=dict)  # generate_until: records per confirmed / single / fallback / none


def flip_summary(records: list[dict]) -> dict:
    """Per ranking (attnlrp, cp, grad_x_input, random): how many records, the mean number of tokens masked until
    the preference flipped (over those that flipped) and the share that flipped within the cap."""
    out: dict[str, dict] = {}
    for r in records:
        for name, k in ((r.get("faithfulness") or {}).get("flip") or {}).items():
            e = out.setdefault(name, {"n": 0, "flipped": []})
            e["n"] += 1
            if isinstance(k, int):
                e["flipped"].append(k)
    return {name: {"n": e["n"], "mean_tokens": statistics.fmean(e["flipped"]) if e["flipped"] else None,
                   "flip_rate": len(e["flipped"]) / e["n"]} for name, e in out.items()}


def model_args(results: dict | None) -> dict:
    """``config.model_args`` of a results JSON as a dict (lm-eval stores a dict or a ``k=v,...`` string)."""
    return parse_model_args(((results or {}).get("config") or {}).get("model_args") or {}, strict=False)


def accuracy_of(results: dict | None, task: str, metric: str | None = None, filt: str | None = None) -> tuple[str | None, float | None]:
    """(metric key, value) of a task in lm-eval's results: ``metric,filter`` if given, else the first numeric one."""
    res = ((results or {}).get("results") or {}).get(task) or {}
    if metric:
        for key in ([f"{metric},{filt}"] if filt else []) + [k for k in res if k.split(",")[0] == metric]:
            if isinstance(res.get(key), (int, float)):
                return key, float(res[key])
    for key, v in res.items():
        if "," in key and "_stderr" not in key and isinstance(v, (int, float)) and not isinstance(v, bool):
            return key, float(v)
    return None, None


def segments_of(run: Run, record: dict, task: str | None = None) -> tuple[dict, bool]:
    """(segment sums, derived?): the record's own, else derived from its prompt and the recorded task config."""
    own = record.get("segments") or {}
    if own or record.get("status") != "attributed":
        return own, False
    task = task or record.get("task")
    res = run.results or {}
    derived = record_segments(record, task_config=(res.get("configs") or {}).get(task),
                              n_shot=(res.get("n-shot") or {}).get(task), code=has_signature_prompt(task))
    return derived, bool(derived)


def task_config(run: Run, task: str | None) -> tuple[dict | None, int | None]:
    """(configuration, number of shots) of a task as lm-eval recorded them in the results JSON."""
    res = run.results or {}
    return (res.get("configs") or {}).get(task), (res.get("n-shot") or {}).get(task)


def pattern_of(run: Run, record: dict, thresholds: Thresholds | None = None, task: str | None = None):
    cfg, n_shot = task_config(run, task or record.get("task"))
    return classify(record, thresholds, task_config=cfg, n_shot=n_shot)


def confidence_of(record: dict) -> str:
    """How a generate_until record's location was established (confirmed / single / fallback; ``none``: nothing
    located); "" for records without a locator (multiple choice)."""
    block = record.get("locate")
    if not isinstance(block, dict):
        return ""
    known = record.get("confidence") or block.get("confidence")
    if known:
        return known
    if not block.get("locator"):
        return "none"
    # a record written before locations said how they were established: the same rules, from what it kept
    locators = set(str(block["locator"]).split("+"))
    if locators & {"cases"}:
        return "confirmed"
    contrast = (record.get("contrast") or {}).get("id")
    if locators.isdisjoint({"rollout"}) and any(
            r.get("position") == block.get("index") and r.get("forced") == contrast and r.get("verdict")
            for r in block.get("rollouts") or [] if block.get("explains", "output") == "output"):
        return "confirmed"
    return "fallback" if locators <= {"gold"} else "single"


def confidence_of_task(records: list[dict]) -> dict:
    """Counts per confidence level of a task's generate_until records, in a fixed order ({} without any)."""
    levels = Counter(confidence_of(r) for r in records)
    levels.pop("", None)
    return {k: levels.get(k, 0) for k in ("confirmed", "single", "fallback", "none")} if levels else {}


def locator_of(record: dict) -> str:
    """How the explained position was found: the record's own ``locator`` field, else from the task kind."""
    loc = record.get("locator") or record.get("located_by")
    if loc:
        return str(loc)
    kind = str(record.get("kind") or "")
    if not kind:
        return "–"
    return "first differing choice token" if kind in ("loglikelihood", "multiple_choice") else "first divergence from gold"


@dataclass
class RecordFacts:
    """What the index needs of one record, computed once: pattern, segment sums, top tokens."""

    pattern: object | None
    segments: dict
    top_segment: str
    top_tokens: list


def record_facts(run: Run, record: dict, thresholds: Thresholds | None = None, task: str | None = None,
                 k: int = 3) -> RecordFacts:
    if record.get("status") != "attributed":
        return RecordFacts(None, {}, "", [])
    segs, _ = segments_of(run, record, task)
    pattern = pattern_of(run, record, thresholds, task)
    pos = [(v, k_) for k_, v in segs.items() if isinstance(v, (int, float)) and v > 0]
    rel = record.get("input_relevance") or []
    toks = record.get("tokens") or []
    special = special_positions(record)
    order = sorted((i for i in range(min(len(rel), len(toks))) if i not in special and rel[i] is not None and rel[i] > 0),
                   key=lambda i: -rel[i])[:k]
    return RecordFacts(pattern, segs, max(pos)[1] if pos else "", [toks[i] for i in order])


def _normalised_tops(facts: list[RecordFacts], records: list[dict], n: int = 12) -> list[tuple[str, int, int]]:
    """Tokens most often in a record's top 3 towards the wrong answer, divided by how many records contain them."""
    top, occurs = Counter(), Counter()
    for f, r in zip(facts, records):
        top.update(set(f.top_tokens))
        occurs.update(set(r.get("tokens") or []))
    floor = 2 if len(records) >= 10 else 1
    rows = [(t, c, occurs[t] or c) for t, c in top.items() if c >= floor]
    rows.sort(key=lambda x: (-x[1] / x[2], -x[1], x[0]))
    return rows[:n]


def open_run(path) -> Run:
    """A run folder read for the report: every lm-eval results file merged (tasks run in separate invocations,
    ``--output_path x.json`` naming), and the attribution records when there are any (a run without ``--lrp`` has
    none)."""
    from ..artifacts import load_run

    return load_run(path)


def summarise(run: Run, thresholds: Thresholds | None = None, facts: dict | None = None) -> list[TaskSummary]:
    """Per task (every task of the results files and of the records): the index's numbers.

    ``facts`` (optional) is filled with :class:`RecordFacts` per ``id(record)`` for the caller to reuse.
    """
    facts = {} if facts is None else facts
    lrp = ((run.results or {}).get("lrp") or {}).get("tasks") or {}
    evaluated = [t for t in ((run.results or {}).get("results") or {}) if t not in lrp and t not in run.tasks]
    names = list(dict.fromkeys(list(lrp) + list(run.tasks) + evaluated))
    out = []
    for name in names:
        recs = run.tasks[name].records if name in run.tasks else []
        s = lrp.get(name) or {}
        attributed = [r for r in recs if r.get("status") == "attributed"]
        metric = s.get("metric") or (recs[0].get("metric") if recs else None)
        acc = s.get("accuracy")
        if acc is None:
            key, acc = accuracy_of(run.results, name, metric, recs[0].get("filter") if recs else None)
            metric = metric or (key.split(",")[0] if key else None)
        deltas = [r["delta"] for r in attributed if r.get("delta") is not None]
        ratios = [r["conservation"]["ratio"] for r in attributed if (r.get("conservation") or {}).get("ratio") is not None]
        for r in recs:
            if id(r) not in facts:
                facts[id(r)] = record_facts(run, r, thresholds, name)
        afacts = [facts[id(r)] for r in attributed]
        pats = Counter(f.pattern.label for f in afacts)
        shares: dict[str, list[float]] = {}
        for f, r in zip(afacts, attributed):
            special = special_positions(r)
            total = sum(abs(x) for i, x in enumerate(r.get("input_relevance") or []) if x is not None and i not in special)
            for seg, v in f.segments.items():
                if total and isinstance(v, (int, float)):
                    shares.setdefault(seg, []).append(v / total)
        out.append(TaskSummary(
            name=name,
            metric=metric,
            accuracy=acc,
            failures=s.get("failures", len(recs) if (recs or s) else None),
            attributed=s.get("attributed", len(attributed)),
            skipped=s.get("skipped") or dict(Counter(r.get("reason") for r in recs if r.get("status") == "skipped")),
            errors=s.get("errors") or dict(Counter(r.get("reason") for r in recs if r.get("status") == "error")),
            clean_case_rate=s.get("clean_case_rate", (len(attributed) / len(recs)) if recs else None),
            median_delta=s.get("median_delta", statistics.median(deltas) if deltas else None),
            median_ratio=s.get("median_conservation_ratio", statistics.median(ratios) if ratios else None),
            patterns={k: pats.get(k, 0) for k in LABELS},
            top_wrong_tokens=s.get("top_wrong_tokens") or [],
            error_count=sum(1 for r in recs if r.get("status") == "error") or sum((s.get("errors") or {}).values()),
            deltas=deltas,
            ratios=ratios,
            segment_shares={k: statistics.fmean(v) for k, v in shares.items()},
            locators=dict(Counter(locator_of(r) for r in recs)),
            top_tokens=_normalised_tops(afacts, attributed),
            flips=flip_summary(attributed),
            confidence=confidence_of_task(recs),
        ))
    return out
