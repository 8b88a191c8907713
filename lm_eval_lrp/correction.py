"""Correction after the fact: re-explain a run's stored generate_until failures at positions a person gives.

``lm-eval-lrp explain RUN_DIR --cases FILE`` reads the run's records, takes each failure's stored prompt ids and
output ids (the ``locate`` block keeps them), places the explained token where the cases file says (the ``cases``
locator, exactly as ``--lrp_locate cases`` does during a run) and explains it on the run's model, loaded from the
run's recorded model arguments. Nothing is re-evaluated. The task's records are written to a new records file beside
the old one (the newest file is the one reports read); each corrected record has locator ``cases`` and keeps the
automatic location under ``automatic``. Records without a case are copied unchanged; the old file stays.

A malformed line of the cases file is named (file:line); a case for a document the run holds no record of is refused
before any model is loaded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .artifacts import AttributionWriter, Run, load_run
from .failures import Case
from .loading import load_model, load_tokenizer
from .model_args import load_spec, parse_model_args, recorded_dtype
from .locate import Context, Generation, NotFound
from .locate.cases import CasesLocator, HandCase
from .locate.confidence import confidence
from .record import FORMAT_VERSION, Record, explained_record, skipped_record, weak_record
from .segments import record_prompt_segments
from .task_kinds import has_signature_prompt

#: the fields of a stored record that describe the document and the model's output (kept in a corrected record)
KEPT = ("task", "doc_id", "doc_hash", "prompt_hash", "filter", "kind", "metric", "metrics", "prompt", "model_output",
        "gold", "fingerprint")
#: what a corrected record keeps of the automatic location
AUTOMATIC = ("status", "reason", "locator", "confidence", "output_offset", "target", "contrast", "delta")


class CorrectionError(ValueError):
    """A cases file or a run that cannot be corrected; the message names the line or the record and the fix."""


@dataclass
class Corrected:
    task: str
    doc_id: int
    status: str
    delta: float | None
    automatic: dict
    reason: str = ""


@dataclass
class Outcome:
    files: list[Path] = field(default_factory=list)
    cases: list[Corrected] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_model_args(run: Run) -> dict:
    return parse_model_args(((run.results or {}).get("config") or {}).get("model_args"))


def run_settings(run: Run) -> dict:
    """The attribution settings the run used (rule, topk, nodes, min_delta, max_length), from its results JSON."""
    res = run.results or {}
    cfg = dict(((res.get("config") or {}).get("lrp")) or {})
    summary = res.get("lrp") or {}
    return {"rule": summary.get("rule") or cfg.get("rule") or "attnlrp", "topk": int(cfg.get("topk") or 5),
            "nodes": cfg.get("nodes", True) not in (False, "false"),
            "min_delta": float(summary.get("min_delta", cfg.get("min_delta", 1.0))),
            "max_length": cfg.get("max_length")}


def check_cases(run: Run, cases: dict[tuple[str, int], HandCase]) -> dict[tuple[str, int], dict]:
    """The stored record of every case; a case the run cannot re-explain is refused, naming its line."""
    found = {}
    for key, case in cases.items():
        task = run.tasks.get(case.task)
        if task is None:
            raise CorrectionError(f"{case.where}: the run has no records of task {case.task!r} "
                                  f"(its tasks: {', '.join(sorted(run.tasks)) or 'none'})")
        record = task.by_doc_id().get(case.doc_id)
        if record is None:
            raise CorrectionError(f"{case.where}: the run holds no record of {case.task} doc {case.doc_id} (it keeps "
                                  "the failures it explained); correct one of its failures, or re-run the evaluation")
        if not isinstance(record.get("locate"), dict):
            raise CorrectionError(f"{case.where}: {case.task} doc {case.doc_id} is a {record.get('kind') or 'non-generate_until'} "
                                  "record: cases place the explained token in a model's generated output")
        found[key] = record
    return found


def stored_generation(record: dict, tokenizer) -> tuple[Generation, str]:
    """The failure as the model produced it, from the record: (generation, "stored" | "re-encoded" output ids)."""
    block = record["locate"]
    prompt_ids = block.get("prompt_ids")
    if prompt_ids is None and record.get("token_ids") and not record.get("truncated_tokens"):
        prompt_ids = record["token_ids"][: record["n_prompt_tokens"]]
    if not prompt_ids:
        raise CorrectionError(f"{record['task']} doc {record['doc_id']}: the record keeps no prompt token ids (written "
                              "by an older lm-eval-lrp, or cut to --lrp_max_length); re-run the evaluation with --lrp")
    output_ids, source = block.get("output_ids"), "stored"
    if output_ids is None:  # records written before the output ids were kept
        output_ids, source = tokenizer(record.get("model_output") or "", add_special_tokens=False)["input_ids"], "re-encoded"
    gen = Generation(prompt_ids, output_ids, record.get("model_output") or "", record.get("gold") or None,
                     task=record["task"], doc_id=record["doc_id"], prompt=record.get("prompt") or "")
    return gen, source


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S.%f")


class Corrector:
    """Re-explains cases on one loaded model (the run's, or ``model_args``)."""

    def __init__(self, run: Run, model, tokenizer, settings: dict, locator: CasesLocator):
        self.run, self.model, self.tok, self.settings, self.locator = run, model, tokenizer, settings, locator
        self.ctx = Context.from_tokenizer(tokenizer, model)
        cfg_len = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        self.max_length = settings.get("max_length") or cfg_len

    def record(self, stored: dict) -> Record:
        """The corrected record of one stored failure."""
        from .lrp import explain

        start = time.perf_counter()
        gen, source = stored_generation(stored, self.tok)
        base = Record({k: stored[k] for k in KEPT if k in stored}, format_version=FORMAT_VERSION)
        if isinstance(stored.get("automatic"), dict):  # corrected before: the automatic location stays the run's own
            base["automatic"] = dict(stored["automatic"])
        else:
            base["automatic"] = {k: stored.get(k) for k in AUTOMATIC if stored.get(k) is not None}
            base["automatic"]["index"] = stored["locate"].get("index")
        ctx = self.ctx.for_doc(None)
        try:
            loc = self.locator.locate(gen, ctx)
        except NotFound as why:
            block = {"chain": ["cases"], "attempts": [{"locator": "cases", "status": "not_found", "reason": str(why)}],
                     "output_tokens": source, "output_ids": list(gen.output_ids), "prompt_ids": list(gen.prompt_ids)}
            return skipped_record(Record(base, locator=None, locate=block, confidence=None),
                                  f"the hand annotation could not be placed ({why})")
        level, why = confidence(loc)
        block = {"chain": ["cases"], "attempts": [{"locator": "cases", "status": "located", "reason": loc.reason}],
                 "locator": loc.locator, "reason": loc.reason, "output_offset": loc.output_offset, "explains": "output",
                 "index": loc.index, "candidates": loc.as_dict()["candidates"], "rollouts": [], "confidence": level,
                 "confidence_why": why, "output_tokens": source, "output_ids": list(gen.output_ids)}
        base.update(locate=block, locator=loc.locator, output_offset=loc.output_offset, confidence=level)
        ids, cut = list(loc.to_contrast(gen).ids), 0
        if self.max_length and len(ids) > self.max_length:
            cut = len(ids) - int(self.max_length)
            ids = ids[cut:]
            block["prompt_ids"] = list(gen.prompt_ids)
        case = Case(ids=ids, position=len(ids) - 1, target=loc.target, contrast=loc.contrast,
                    n_prompt=max(0, len(gen.prompt_ids) - cut), prompt=gen.prompt, model_output=gen.output,
                    gold=gen.gold or "", truncated=cut, note=loc.reason)
        if loc.contrast is None:
            return skipped_record(base, "the hand annotation gives no contrast and the cases locator found none "
                                  "(add \"contrast\" to the line)", case, self.tok)
        s = self.settings
        expl = explain(self.model, case.explained, rule=s["rule"], topk=s["topk"], nodes=s["nodes"])
        configs = (self.run.results or {}).get("configs") or {}
        n_shot = ((self.run.results or {}).get("n-shot") or {}).get(stored["task"])
        code = has_signature_prompt(stored["task"])
        segments = record_prompt_segments(stored, configs.get(stored["task"]), n_shot, code=code) if case.prompt else []
        record = explained_record(base, case, expl, self.tok, segments, time.perf_counter() - start)
        record["note"] = loc.reason
        if expl.delta <= s["min_delta"]:
            record = weak_record(record, s["min_delta"])
        record._explanation = expl  # node relevance for the writer (not serialised)
        return record


def correct(run_dir, cases_path, model_args: str | dict | None = None, *, device: str = "cpu",
            dtype: str | None = None, progress=None) -> Outcome:
    """Re-explain the run's failures named in ``cases_path``; write each task's corrected records file."""
    run = load_run(run_dir)
    try:
        locator = CasesLocator(cases_path)
    except FileNotFoundError as err:
        raise CorrectionError(str(err)) from None
    if not locator.cases:
        raise CorrectionError(f"{cases_path}: no cases (one JSON object per line: task, doc_id, offset or index)")
    stored = check_cases(run, locator.cases)
    args = parse_model_args(model_args) if model_args else run_model_args(run)
    if not args:
        raise CorrectionError(f"{run.path}: no results JSON with config.model_args; pass --model_args pretrained=...")
    spec = load_spec(args)
    model = load_model(spec, device=device, dtype=dtype or recorded_dtype(args) or "float32")
    tok = load_tokenizer(spec)
    corrector = Corrector(run, model, tok, run_settings(run), locator)
    out = Outcome()
    for task in sorted({t for t, _ in locator.cases}):
        ta = run.tasks[task]
        path = ta.path.with_name(f"attributions_{task}_{_stamp()}.jsonl")
        with AttributionWriter(path, sidecar=path.with_suffix(".nodes")) as writer:
            for old in ta.records:
                key = (task, old["doc_id"])
                if key not in stored:
                    writer.write(old)
                    continue
                new = corrector.record(stored[key])
                expl = getattr(new, "_explanation", None)
                nodes = expl.node_relevance if expl is not None and corrector.settings["nodes"] else None
                writer.write(dict(new), nodes, expl.node_names if expl is not None else None)
                out.cases.append(Corrected(task, old["doc_id"], new["status"], new.get("delta"), new["automatic"],
                                           new.get("reason", "")))
                if progress is not None:
                    progress()
        out.files.append(path)
    return out
