"""Run A's failures re-explained on run B's model (``lm-eval-lrp compare``: model sizes, or checkpoints of one model; the
paper's scaling study).

For every attributed failure of run A, the *same question* — A's exact token ids, explained position, target
(A's wrong token) and contrast (the gold token) — is explained again on B's model with the engine's
:func:`~lm_eval_lrp.lrp.explain`. B's own records are never reused as answers: when B failed the document too,
its record usually explains a different position or token pair. A case is *corrected* when Δℓ_B < 0, i.e. B
prefers the correct token at A's position. The tokenizers must be the same (the ids are reused); this is checked.

Segment relevance (instruction / few-shot / query / answer so far) is recomputed for both models from the prompt,
the task's configuration recorded by lm-eval (description, few-shot delimiter, number of shots) and the tokenizer's
offsets, so A and B are summed over identical token sets; ``segments_match_run`` says whether that reconstruction
reproduces A's own recorded sums. Segment values are also given normalised by Σ|R| (special tokens excluded),
which makes models of different scale comparable.

This is the one place that re-runs attribution; reports never run a model. The page and JSON written from the
result: :mod:`lm_eval_lrp.report.compare_page`.
"""

from __future__ import annotations

import gc
import time
from collections import Counter

from .artifacts import Run
from .compare_stats import aggregate
from .loading import load_model, load_tokenizer
from .model_args import ModelArgsError, describe, load_spec, parse_model_args, recorded_dtype, short_name
from .patterns import Thresholds, classify, special_positions
from .record import Record
from .segments import record_segments
from .report.summary import open_run
from .task_kinds import has_signature_prompt



class TokenizerMismatch(ValueError):
    """A's token ids do not mean the same on B: the comparison would explain a different question."""


class CompareError(ValueError):
    pass


def run_model_args(run: Run) -> dict:
    """The model arguments a run was evaluated with (from its results JSON)."""
    return parse_model_args(((run.results or {}).get("config") or {}).get("model_args"))


# --- tokenizer check ---------------------------------------------------------------------------------------------


def check_tokenizers(records: list[dict], tok_b, tok_a=None, name_a: str = "A", name_b: str = "B",
                     vocab_size_b: int | None = None) -> list[str]:
    """Raise :class:`TokenizerMismatch` unless A's token ids mean the same on B; returns notes on what was checked."""
    notes = []
    if tok_a is not None:
        va, vb = tok_a.get_vocab(), tok_b.get_vocab()
        if va != vb:
            inv_b = {i: t for t, i in vb.items()}
            diff = [(i, t, inv_b.get(i)) for t, i in sorted(va.items(), key=lambda x: x[1]) if inv_b.get(i) != t]
            example = ", ".join(f"id {i}: {a!r} vs {b!r}" for i, a, b in diff[:3])
            raise TokenizerMismatch(
                f"the tokenizers differ: {name_a} has {len(va)} tokens, {name_b} has {len(vb)}; {len(diff)} ids map to "
                f"different tokens ({example}). compare re-explains A's exact token ids on B, so both models must share "
                "one tokenizer (e.g. sizes or checkpoints of one model family).")
        notes.append(f"vocabularies identical ({len(va)} tokens)")
    bad = []
    for r in records:
        ids = r.get("token_ids") or []
        toks = r.get("tokens") or []
        pairs = list(zip(ids, toks)) + [((r.get(k) or {}).get("id"), (r.get(k) or {}).get("token")) for k in ("target", "contrast")]
        for i, t in pairs:
            if i is None or t is None:
                continue
            if vocab_size_b is not None and not 0 <= int(i) < vocab_size_b:
                bad.append((r, i, t, f"<outside B's vocabulary of {vocab_size_b}>"))
                break
            got = tok_b.decode([int(i)])
            if got != t:
                bad.append((r, i, t, got))
                break
    if bad:
        r, i, t, got = bad[0]
        raise TokenizerMismatch(
            f"the tokenizers differ: in {len(bad)} of {len(records)} records token ids decode differently on {name_b} "
            f"(e.g. {r.get('task')} doc {r.get('doc_id')}: id {i} is {t!r} for {name_a} but {got!r} for {name_b}). "
            "compare re-explains A's exact token ids on B, so both models must share one tokenizer.")
    notes.append(f"token ids of {len(records)} records decode identically on {name_b}")
    return notes


# --- segments ----------------------------------------------------------------------------------------------------


def normalised(segs: dict, relevance: list[float], special: set[int]) -> dict:
    total = sum(abs(r) for i, r in enumerate(relevance) if i not in special and r is not None)
    return {k: (v / total if total else 0.0) for k, v in segs.items()}


def _segments_agree(mine: dict, recorded: dict, relevance: list[float]) -> bool:
    if set(mine) != set(recorded or {}):
        return False
    tol = 1e-4 + 1e-3 * sum(abs(r or 0.0) for r in relevance)
    return all(abs(mine[k] - float(recorded[k] or 0.0)) <= tol for k in mine)


def top_tokens(record: dict, relevance: list[float], k: int = 5) -> list[dict]:
    """The ``k`` tokens pushing hardest towards the wrong token (special tokens excluded), normalised."""
    special = special_positions(record)
    toks = record.get("tokens") or []
    scale = max((abs(r) for i, r in enumerate(relevance) if i not in special), default=0.0) or 1.0
    order = sorted((i for i in range(len(relevance)) if i not in special and relevance[i] > 0), key=lambda i: -relevance[i])[:k]
    return [{"index": i, "token": toks[i] if i < len(toks) else None, "value": relevance[i] / scale} for i in order]


# --- the comparison ----------------------------------------------------------------------------------------------


def _max_failures(run: Run):
    cfg = (run.results or {}).get("config") or {}
    cap = (cfg.get("lrp") or {}).get("max_failures")
    if cap is None:
        cap = run_model_args(run).get("lrp_max_failures")
    return cap


def b_outcome(run_b: Run, task: str, doc_id) -> str:
    """'failed' when B's run recorded the document as a failure, 'right' when it evaluated the task without
    a failure record for it, 'unknown' when B's run did not evaluate the task or capped its failures."""
    if task in run_b.tasks and doc_id in run_b.tasks[task].by_doc_id():
        return "failed"
    results = (run_b.results or {}).get("results") or {}
    lrp = (run_b.results or {}).get("lrp")
    if task not in results or not isinstance(lrp, dict) or lrp.get("error") or task not in (lrp.get("tasks") or {}):
        return "unknown"  # B's run did not evaluate the task, or did not look for its failures
    if _max_failures(run_b) is not None:
        return "unknown"
    n = ((run_b.results or {}).get("n-samples") or {}).get(task) or {}
    effective = n.get("effective") if isinstance(n, dict) else None
    if isinstance(effective, int) and isinstance(doc_id, int) and doc_id >= effective:
        return "unknown"
    return "right"


def accuracy_table(run_a: Run, run_b: Run) -> list[dict]:
    from .report.summary import accuracy_of

    rows = []
    lrp_a = ((run_a.results or {}).get("lrp") or {}).get("tasks") or {}
    tasks = list(dict.fromkeys(list(((run_a.results or {}).get("results") or {})) + list(((run_b.results or {}).get("results") or {}))))
    for task in tasks:
        metric = (lrp_a.get(task) or {}).get("metric")
        filt = None
        if task in run_a.tasks and run_a.tasks[task].records:
            filt = run_a.tasks[task].records[0].get("filter")
            metric = metric or run_a.tasks[task].records[0].get("metric")
        key_a, va = accuracy_of(run_a.results, task, metric, filt)
        key_b, vb = accuracy_of(run_b.results, task, (key_a or "").split(",")[0] or metric, filt)
        if va is None and vb is None:
            continue
        rows.append({"task": task, "metric": key_a or key_b, "a": va, "b": vb,
                     "difference": (vb - va) if va is not None and vb is not None else None})
    return rows


def compare_one(record: dict, model_b, tokenizer, run_a: Run, run_b: Run, rule: str | None = None,
                thresholds: Thresholds | None = None, topk: int = 5) -> dict:
    """Re-explain A's case on B's model; everything the page and the JSON need about it."""
    from .lrp import explain

    th = thresholds or Thresholds()
    task = record["task"]
    t0 = time.perf_counter()
    expl = explain(model_b, record.explained if isinstance(record, Record) else Record.load(record).explained,
                   rule=rule or record.get("rule") or "attnlrp", topk=topk, nodes=False)
    seconds = time.perf_counter() - t0
    rel_b = [float(x) for x in expl.input_relevance]
    rel_a = [float(x or 0.0) for x in record.get("input_relevance") or []]
    configs = (run_a.results or {}).get("configs") or {}
    n_shot = ((run_a.results or {}).get("n-shot") or {}).get(task)
    code = has_signature_prompt(task)
    seg_a = record_segments(record, rel_a, tokenizer=tokenizer, task_config=configs.get(task), n_shot=n_shot, code=code)
    seg_b = record_segments(record, rel_b, tokenizer=tokenizer, task_config=configs.get(task), n_shot=n_shot, code=code)
    special = special_positions(record, th.special_tokens)
    corrected = expl.delta < 0
    pat_a = classify(record, th, relevance=rel_a, task_config=configs.get(task), n_shot=n_shot)
    pat_b = classify(record, th, relevance=rel_b, task_config=configs.get(task), n_shot=n_shot) if not corrected else None
    b_rec = run_b.tasks[task].by_doc_id().get(record["doc_id"]) if task in run_b.tasks else None
    same_question = bool(b_rec and b_rec.get("token_ids") == record["token_ids"] and b_rec.get("position") == record["position"]
                         and (b_rec.get("target") or {}).get("id") == record["target"]["id"]
                         and (b_rec.get("contrast") or {}).get("id") == record["contrast"]["id"])
    doc_mismatch = bool(b_rec and b_rec.get("doc_hash") and record.get("doc_hash") and b_rec["doc_hash"] != record["doc_hash"])
    ta, tb = top_tokens(record, rel_a, 5), top_tokens(record, rel_b, 5)
    ia, ib = {x["index"] for x in ta}, {x["index"] for x in tb}
    b_top1 = expl.topk[0][0] if expl.topk else None
    return {
        "task": task,
        "doc_id": record["doc_id"],
        "doc_hash": record.get("doc_hash"),
        "target": record["target"],
        "contrast": record["contrast"],
        "delta_a": record.get("delta"),
        "delta_b": expl.delta,
        "logits_b": {"target": expl.target_logit, "contrast": expl.contrast_logit},
        "corrected": corrected,
        "b_top1": {"id": b_top1, "token": tokenizer.decode([b_top1]) if b_top1 is not None else None},
        "b_outcome": b_outcome(run_b, task, record["doc_id"]),
        "b_record_same_question": same_question,
        "doc_hash_mismatch": doc_mismatch,
        "segments_a": seg_a,
        "segments_b": seg_b,
        "segments_norm_a": normalised(seg_a, rel_a, special),
        "segments_norm_b": normalised(seg_b, rel_b, special),
        "segments_match_run": _segments_agree(seg_a, record.get("segments") or {}, rel_a),
        "pattern_a": pat_a.label,
        "pattern_b": pat_b.label if pat_b else None,
        "top_tokens_a": ta,
        "top_tokens_b": tb,
        "top_overlap": (len(ia & ib) / len(ia | ib)) if (ia | ib) else None,
        "conservation_ratio_b": (sum(rel_b) / expl.delta) if expl.delta else None,
        "sum_a": sum(rel_a),
        "sum_b": sum(rel_b),
        "seconds": round(seconds, 4),
    }


def comparable(run_a: Run, tasks: list[str] | None = None, limit: int | None = None) -> list[dict]:
    """A's attributed failures that can be re-explained (token ids, target and contrast recorded)."""
    records = []
    for task, ta in run_a.tasks.items():
        if tasks and task not in tasks:
            continue
        recs = [r for r in ta.attributed if r.get("token_ids") and r.get("target") and r.get("contrast")]
        records += recs[:limit] if limit else recs
    return records


def why_nothing(run_a: Run, tasks: list[str] | None = None) -> str:
    """Why A has no failure to compare: no records, or every failure skipped (with the reasons and the fix)."""
    recs = [r for t, ta in run_a.tasks.items() if not tasks or t in tasks for r in ta.records]
    if not recs:
        lrp = (run_a.results or {}).get("lrp")
        return ("nothing was compared: the first run has no attribution records"
                + (" (it was run without --lrp)" if not lrp else " (it had no failures in the selected tasks)") + ".")
    reasons = Counter(f"{r.get('status')}: {r.get('reason')}" for r in recs if r.get("status") != "attributed")
    text = "; ".join(f"{n}× {k}" for k, n in reasons.most_common())
    fix = (" Rerun the first run with a lower --lrp_min_delta (e.g. 0) to explain weak preferences too."
           if any("weak" in k for k in reasons) else "")
    return f"nothing was compared: none of the first run's {len(recs)} failures was attributed ({text}).{fix}"


def compare_runs(run_a: Run, run_b: Run, model_b, tokenizer_b, *, tokenizer_a=None, name_a: str | dict = "A",
                 name_b: str | dict = "B", rule: str | None = None, tasks: list[str] | None = None, limit: int | None = None,
                 thresholds: Thresholds | None = None, progress=None) -> dict:
    """Explain each attributed failure of A on ``model_b``; returns the JSON-ready summary."""
    records = comparable(run_a, tasks, limit)
    vocab_b = model_b.get_output_embeddings().weight.shape[0]
    notes = check_tokenizers(records, tokenizer_b, tokenizer_a, *(n["name"] if isinstance(n, dict) else n for n in (name_a, name_b)),
                             vocab_size_b=vocab_b)
    cases, errors = [], []
    for r in records:
        try:
            cases.append(compare_one(r, model_b, tokenizer_b, run_a, run_b, rule, thresholds))
        except Exception as err:  # noqa: BLE001 - one document never stops the comparison
            errors.append({"task": r.get("task"), "doc_id": r.get("doc_id"), "error": f"{type(err).__name__}: {err}"})
        if progress is not None:
            progress()
    by_task = {}
    for c in cases:
        by_task.setdefault(c["task"], []).append(c)
    if any(c["doc_hash_mismatch"] for c in cases):
        notes.append("some documents have different hashes in A and B: the runs did not evaluate the same data")
    return summary_dict(run_a, run_b, name_a, name_b, rule, notes, cases, errors, by_task)


def summary_dict(run_a: Run, run_b: Run, name_a, name_b, rule, notes, cases, errors, by_task) -> dict:
    """``name_a`` / ``name_b``: a run's description (a dict from :func:`who`, or a plain name)."""
    a, b = (n if isinstance(n, dict) else {"name": n, "label": n} for n in (name_a, name_b))
    return {
        "format": "lm-eval-lrp-compare/1",
        "a": {**a, "run": str(run_a.path)},
        "b": {**b, "run": str(run_b.path)},
        "rule": rule or "as recorded in A",
        "notes": notes,
        "accuracy": accuracy_table(run_a, run_b),
        "overall": aggregate(cases),
        "tasks": {t: aggregate(cs) for t, cs in by_task.items()},
        "cases": cases,
        "errors": errors,
    }


def run_rule(run: Run) -> str | None:
    """The LRP rule a run's attributions used (its results JSON), None when not recorded."""
    return ((run.results or {}).get("lrp") or {}).get("rule") or run_model_args(run).get("lrp_rule")


def who(run: Run, args: dict | None = None, dtype: str | None = None, rule: str | None = None) -> dict:
    """A run's model as pages show it: ``name`` (weights, dtype, rule), ``label`` (short), ``model``, ``dtype``, ``rule``."""
    args = args if args is not None else run_model_args(run)
    try:
        spec = load_spec(args)
    except (ModelArgsError, ValueError, KeyError):
        return {"name": str(run.path), "label": run.path.name, "model": run.path.name, "dtype": dtype, "rule": rule}
    shown_dtype = dtype if dtype not in (None, "float32") else None
    shown_rule = rule if rule not in (None, "attnlrp") else None
    return {"name": describe(spec, shown_dtype, shown_rule), "model": short_name(spec), "dtype": dtype or "float32",
            "rule": rule or "attnlrp", "label": " ".join(x for x in (short_name(spec), shown_dtype, shown_rule) if x)}


def compare(run_a_path, run_b_path, model_args_b: str | dict | None = None, *, device: str = "cpu",
            dtype: str | None = None, rule: str | None = None, tasks: list[str] | None = None, limit: int | None = None,
            thresholds: Thresholds | None = None, progress_factory=None) -> dict:
    """Load both runs and B's model (from B's recorded model arguments unless given), then :func:`compare_runs`.

    ``dtype`` / ``rule``: None (default) loads B's model in the dtype B was evaluated in (its ``dtype=`` model
    argument; float32 when none) and explains under the rule B's run used (A's records' rule when B has none), so
    that a run in bfloat16 or under CP-LRP is compared as it was run.
    """
    run_a, run_b = open_run(run_a_path), open_run(run_b_path)
    args_a = run_model_args(run_a)
    args_b = parse_model_args(model_args_b) if model_args_b else run_model_args(run_b)
    dtype_b = dtype or recorded_dtype(args_b) or "float32"
    rule_b = rule or run_rule(run_b)
    a = who(run_a, args_a, recorded_dtype(args_a), run_rule(run_a))
    b = who(run_b, args_b, dtype_b, rule_b or a["rule"])
    if not comparable(run_a, tasks, limit):
        return summary_dict(run_a, run_b, a, b, rule_b, [why_nothing(run_a, tasks)], [], [], {})
    if not args_b:
        raise CompareError(f"{run_b.path}: no results JSON with config.model_args; pass --model_args_b pretrained=...")
    spec_b = load_spec(args_b)
    tok_a, tok_a_error = None, None
    try:
        tok_a = load_tokenizer(load_spec(args_a))
    except Exception as err:  # noqa: BLE001 - A's files may be gone: the per-record check still runs; the cause is named
        tok_a_error = f"{type(err).__name__}: {str(err)[:200]}"
    model_b, tok_b = load_model(spec_b, device=device, dtype=dtype_b), load_tokenizer(spec_b)
    try:
        total = sum(min(len(t.attributed), limit or 10**9) for n, t in run_a.tasks.items() if not tasks or n in tasks)
        progress = progress_factory(total) if progress_factory else None
        summary = compare_runs(run_a, run_b, model_b, tok_b, tokenizer_a=tok_a, name_a=a, name_b=b, rule=rule_b,
                               tasks=tasks, limit=limit, thresholds=thresholds, progress=progress)
    finally:
        del model_b
        gc.collect()
    if tok_a is None:
        summary["notes"].append(f"A's tokenizer could not be loaded ({tok_a_error}): the check compared token strings "
                                "of A's records only")
    summary["b"]["model_args"] = spec_b
    return summary
