"""Explaining one task's failures: failure → case (what is explained) → explanation → record, written one by one."""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections import Counter
from pathlib import Path

import torch

from ..failures import Case, Failure, multiple_choice_case
from ..lrp import ExplainError, explain, explain_context_pair, explain_sequences, explain_many
from ..lrp.sequences_batched import explain_sequences_many
from ..record import (TOKENISE, Record, base_record, error_record, explained_record, prompt_spans_wanted, skipped_record,
                      weak_record)
from ..segments import char_spans_many
from .locating import LocateFailed, Locating
from .subject import Subject

log = logging.getLogger("lm_eval_lrp")

#: the first this many documents of a task failing with the same exception at the same place stop the task
SYSTEMATIC_K = 5


class SystematicBug(Exception):
    """The same exception at the same place on a task's first :data:`SYSTEMATIC_K` documents: a bug, not the data."""

    def __init__(self, task: str, error: BaseException, place: str, k: int):
        self.task, self.error, self.place, self.k = task, error, place, k
        self.traceback = "".join(traceback.format_exception(error))
        super().__init__(f"attribution stopped: the same {type(error).__name__} at {place} on its first {k} documents "
                         f"({error}) — a bug in the attribution or a hook, not in the data")


def _place(err: BaseException) -> str:
    """Where ``err`` was raised: the innermost frame of its traceback (``file:line in function``)."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return "(no traceback)"
    f = frames[-1]
    return f"{Path(f.filename).name}:{f.lineno} in {f.name}"


OOM_ADVICE = ("out of memory during attribution: use a shorter context (lrp_max_length) or turn node relevance off "
              "(lrp_nodes=false)")


def _sequence_block(seq) -> dict:
    return {"delta": seq.delta, "logprob_wrong": seq.logprob_wrong, "logprob_gold": seq.logprob_gold,
            "context_relevance": [round(x, 7) for x in seq.context_relevance.tolist()]}


class TaskAttribution:
    """Explains the failures of one task and keeps (and writes) their records."""

    def __init__(self, subject: Subject, task, hook, writer, fingerprint: str):
        self.subject, self.task, self.hook, self.writer = subject, task, hook, writer
        self.cfg = subject.config
        self.fingerprint = fingerprint
        self.records: list[Record] = []
        self.locating = Locating(subject, task, hook) if task.output_type == "generate_until" else None
        self.fallbacks: Counter = Counter()  # cause -> how often (a batch retried one by one, a graph's other path)
        self._first: list[tuple[str, str] | None] = []  # (exception type, place) of the first documents; None: fine
        self._held: list[str] = []  # their warnings, held until it is clear they are not one systematic bug
        self._start = time.perf_counter()

    @property
    def write_seconds(self) -> float:
        """Time spent writing records and node sidecars."""
        return self.writer.seconds if self.writer is not None else 0.0

    # --- which token, against which ---------------------------------------------------------------------------

    def case(self, failure: Failure) -> tuple[Case, dict | None]:
        """What to explain: multiple choice by lm-eval's own scoring; generate_until by the task's locator chain."""
        s = self.subject
        if failure.kind == "multiple_choice":
            return multiple_choice_case(failure, self.task, s.encode_pair, s.max_length), None
        return self.locating.case(failure)

    # --- one failure -----------------------------------------------------------------------------------------

    def explain_all(self, failures: list[Failure], done=lambda: None) -> None:
        """Every failure of the task; multiple-choice ones in batches when ``--lrp_batch_size`` is not 1."""
        if self.cfg.batch_size == 1 or self.task.output_type != "multiple_choice" or self.task.multiple_input:
            if self.locating is not None:
                self.locating.prefetch(failures)
            for failure in failures:
                self.explain_one(failure)
                done()
            return
        ready, prep = [], []
        for failure in failures:
            prepared = self._guarded(failure, self._prepare, last=False)
            if isinstance(prepared, Record):
                done()
            else:
                ready.append(prepared)
                prep.append(time.perf_counter() - self._start)
        entries = explain_many(self.subject.model, [case.explained for _, case, _ in ready], batch_size=self.cfg.batch_size,
                               rule=self.cfg.rule, topk=self.cfg.topk, nodes=self.cfg.nodes, on_split=self._split)
        sequences = self._sequences([case for _, case, _ in ready], entries)
        spans = self._spans([case for _, case, _ in ready], entries)
        if self.writer is not None:  # the records of a batch: one sidecar file and one flush (all written by close)
            self.writer.hold = self.cfg.batch_size if isinstance(self.cfg.batch_size, int) else 8
        try:
            for k, ((failure, case, base), entry, before) in enumerate(zip(ready, entries, prep)):
                # a record's seconds: its own preparation, its share of the batched explanation (its timings), the rest
                share = 0.0 if isinstance(entry, ExplainError) else sum(getattr(entry, "seconds", {}).values())
                self._start = time.perf_counter() - before - share
                if isinstance(entry, ExplainError):
                    reason, advice = ("out of memory", entry.advice or OOM_ADVICE) if entry.out_of_memory else (entry.error, None)
                    self._emit(error_record(base, reason, advice, case, self.subject.tokenizer))
                else:
                    self._guarded(failure, lambda f: self._finish(f, case, base, entry, sequences.get(k), spans[k]), base, case)
                done()
        finally:
            if self.writer is not None:
                self.writer.hold = 1
        if self.writer is not None:
            self.writer.commit()

    def _sequences(self, cases: list[Case], entries: list) -> dict[int, tuple]:
        """The sequence-level contrasts the records of a batch will carry, computed in batches as well:
        index -> (explanation, seconds per record). One that fails in its batch is left out, to be computed (and
        its error recorded) on its own by :meth:`_extras`, as with batch size 1."""
        wanted = [k for k, (case, e) in enumerate(zip(cases, entries))
                  if case.sequence is not None and not isinstance(e, ExplainError)
                  and (self.cfg.sequence or e.delta < 0) and e.finite]  # finite last: a scan of the relevance
        if not wanted:
            return {}
        t = time.perf_counter()
        size = self.cfg.batch_size if isinstance(self.cfg.batch_size, int) else 8
        found = explain_sequences_many(self.subject.model, [cases[k].sequence for k in wanted], size, rule=self.cfg.rule)
        share = (time.perf_counter() - t) / len(wanted)
        return {k: (seq, share) for k, seq in zip(wanted, found) if not isinstance(seq, ExplainError)}

    def _spans(self, cases: list[Case], entries: list) -> list:
        """The character spans of the explained cases' prompt tokens, from one tokenizer call for all of them
        (:data:`TOKENISE` where a record needs none or its explanation failed)."""
        wanted = {k: prompt_spans_wanted(case) for k, (case, e) in enumerate(zip(cases, entries))
                  if not isinstance(e, ExplainError)}
        wanted = {k: text for k, text in wanted.items() if text is not None}
        found = char_spans_many(self.subject.tokenizer, list(wanted.values()),
                                [cases[k].ids[: cases[k].n_prompt] for k in wanted])
        out: list = [TOKENISE] * len(cases)
        for k, spans in zip(wanted, found):
            out[k] = spans
        return out

    def explain_one(self, failure: Failure) -> Record:
        def one(f: Failure) -> Record:
            prepared = self._prepare(f)
            if isinstance(prepared, Record):
                return prepared
            _, case, base = prepared
            expl = explain(self.subject.model, case.explained, rule=self.cfg.rule, topk=self.cfg.topk, nodes=self.cfg.nodes)
            return self._finish(f, case, base, expl)

        return self._guarded(failure, one)

    def _prepare(self, failure: Failure):
        """(failure, case, base record) to explain, or the record when there is nothing to explain (emitted)."""
        self._start = time.perf_counter()
        base = base_record(failure)
        if failure.kind == "multiple_choice" and self.task.multiple_input:
            return self._emit(self._context_pair(failure, base))
        case, located = self.case(failure)
        base = base_record(failure, case)
        if located is not None:
            base.update(locate=located, locator=located.get("locator"), output_offset=located.get("output_offset"),
                        confidence=located.get("confidence"))
            base["locate"]["seconds_total"] = round(time.perf_counter() - self._start, 4)
        if case.skip:
            return self._emit(skipped_record(base, case.skip, case, self.subject.tokenizer))
        return failure, case, base

    def _finish(self, failure: Failure, case: Case, base: Record, expl, sequence: tuple | None = None,
                spans=TOKENISE) -> Record:
        """The record of an explanation: checked, weak or clean, with the extras asked for; handed to the writer (written
        at once, or with the rest of its batch)."""
        tok, cfg = self.subject.tokenizer, self.cfg
        if not (expl.finite and math.isfinite(float(expl.delta))):
            return self._emit(error_record(base, "non-finite relevance or logits (NaN/inf): not written as numbers",
                                           case=case, tokenizer=tok))
        segments = self.hook.segments(self.task, failure.doc, case.prompt) if case.prompt else []
        record = explained_record(base, case, expl, tok, segments, time.perf_counter() - self._start, spans)
        if expl.delta <= cfg.min_delta:
            record = weak_record(record, cfg.min_delta)
        self._extras(record, case, expl, failure, sequence)
        record["seconds"] = round(time.perf_counter() - self._start, 4)
        return self._emit(record, expl)

    def _guarded(self, failure: Failure, step, base: Record | None = None, case: Case | None = None, last: bool = True):
        """``step(failure)``; a failure of it becomes this document's error record (the others go on), unless the
        task's first :data:`SYSTEMATIC_K` documents all fail the same way: then :class:`SystematicBug` stops it.
        ``last=False``: a step after which the document is not done yet (its success settles nothing)."""
        tok = self.subject.tokenizer
        base = base if base is not None else base_record(failure)
        try:
            done = step(failure)
        except LocateFailed as err:
            self._seen(None)
            return self._emit(error_record(Record(base, locate=err.block), f"locating the error failed: {err}"))
        except torch.OutOfMemoryError:
            self._seen(None)
            return self._emit(error_record(base, "out of memory", OOM_ADVICE, case, tok))
        except Exception as err:  # noqa: BLE001 - one bad document never stops the others; a systematic bug does
            text = str(err).lower()
            if isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text):
                self._seen(None)
                return self._emit(error_record(base, "out of memory", OOM_ADVICE, case, tok))
            record = self._emit(error_record(base, f"{type(err).__name__}: {err}", case=case, tokenizer=tok))
            self._held.append(f"lm-eval-lrp: {failure.task} doc {failure.doc_id}: {type(err).__name__} at {_place(err)}: {err}")
            self._seen((type(err).__name__, _place(err)), err)
            return record
        if last:
            self._seen(None)
        return done

    def _seen(self, fault: tuple[str, str] | None, err: BaseException | None = None) -> None:
        """Note how one of the task's first documents ended; stop the task when they all failed the same way."""
        if len(self._first) < SYSTEMATIC_K:
            self._first.append(fault)
            if len(self._first) == SYSTEMATIC_K and fault is not None and set(self._first) == {fault}:
                self._held.clear()
                raise SystematicBug(self.task.name, err, fault[1], SYSTEMATIC_K)
            if fault is not None and set(self._first) == {fault}:
                return  # still possibly one systematic bug: its warnings wait
        for message in self._held:
            log.warning("%s", message)
        self._held.clear()

    def flush_warnings(self) -> None:
        """Say the held warnings of a task that ended before its first documents settled the question."""
        for message in self._held:
            log.warning("%s", message)
        self._held.clear()

    def _split(self, size: int, error: str) -> None:
        """The batched path retried a failed batch one by one (it logs that once per cause): counted for the summary."""
        self.fallbacks[f"batch retried one by one after {error}"] += 1

    def _extras(self, record: Record, case: Case, expl, failure: Failure, sequence: tuple | None = None) -> None:
        """Faithfulness and the sequence-level contrast, where asked for (or where the token level misleads)."""
        cfg, model = self.cfg, self.subject.model
        if cfg.faithfulness and record["status"] == "attributed":
            from ..faithfulness import faithfulness

            t = time.perf_counter()
            record["faithfulness"] = faithfulness(model, case.ids, case.position, case.target, case.contrast,
                                                  expl.input_relevance, seed=failure.doc_id, rule=cfg.rule)
            record["timings"]["faithfulness"] = round(time.perf_counter() - t, 4)
        if case.sequence is not None and (cfg.sequence or expl.delta < 0):
            if sequence is None:  # batch size 1, or its batch failed: on its own
                t = time.perf_counter()
                sequence = explain_sequences(model, *case.sequence, rule=cfg.rule), time.perf_counter() - t
            record["sequence"] = _sequence_block(sequence[0])
            record["timings"]["sequence"] = round(sequence[1], 4)

    def _context_pair(self, failure: Failure, base: Record) -> Record:
        """Multiple-input tasks (winogrande): the choices are contexts and one continuation is scored after each;
        explained is what lm-eval compared, log p(cont | predicted context) − log p(cont | gold context)."""
        s, args = self.subject, failure.requests
        pred = self.task.predicted_index(failure.sample, failure.metric)
        golds = self.task.gold_indices(failure.doc, len(args))
        if not golds or golds[0] == pred:
            return skipped_record(base, "no valid gold context for this document")
        (ctx_p, cont), (ctx_g, cont_g) = args[pred][:2], args[golds[0]][:2]
        cp, wp = s.encode_pair(ctx_p, cont)
        cg, _ = s.encode_pair(ctx_g, cont_g)
        base.update(prompt=ctx_p, model_output=ctx_p, gold=ctx_g, objective="context_pair", kind="multiple_input")
        t = time.perf_counter()
        pair = explain_context_pair(s.model, cp, cg, wp, rule=self.cfg.rule)
        tok = s.tokenizer
        record = Record(
            base, status="attributed", rule=pair.rule,
            tokens=[tok.decode([i]) for i in pair.wrong_ids], token_ids=pair.wrong_ids, n_prompt_tokens=pair.n_wrong_context,
            contrast_tokens=[tok.decode([i]) for i in pair.gold_ids], contrast_token_ids=pair.gold_ids,
            n_contrast_prompt_tokens=pair.n_gold_context, continuation=cont,
            delta=pair.delta, logprob_wrong=pair.logprob_wrong, logprob_gold=pair.logprob_gold,
            input_relevance=[round(float(x), 7) for x in pair.wrong_relevance],
            contrast_relevance=[round(float(x), 7) for x in pair.gold_relevance],
            conservation={"sum_input": float(pair.wrong_relevance.sum() - pair.gold_relevance.sum()), "delta": pair.delta,
                          "ratio": float(pair.wrong_relevance.sum() - pair.gold_relevance.sum()) / pair.delta if pair.delta else None},
            timings={"sequence": round(time.perf_counter() - t, 4)},
        )
        if not pair.finite:
            return error_record(base, "non-finite relevance or logits (NaN/inf): not written as numbers")
        return weak_record(record, self.cfg.min_delta) if pair.delta <= self.cfg.min_delta else record

    # --- graphs ----------------------------------------------------------------------------------------------

    def graph_candidates(self) -> list[Record]:
        chosen = sorted((r for r in self.records if r["status"] == "attributed" and r.explained is not None),
                        key=lambda r: -r["delta"])
        return chosen[: self.cfg.graph_count(len(chosen))]

    def build_graph(self, record: Record, out_dir: Path | None) -> bool:
        """The attribution graph of one attributed record, written beside the records."""
        from ..graph import build_graph, graph_filename

        try:
            graph = build_graph(self.subject.model, record.explained, rule=self.cfg.rule, prune=self.cfg.graph_prune,
                                tokens=record["tokens"], record=record)
        except Exception as err:  # noqa: BLE001 - a graph is an extra; the records stay; counted in the summary
            log.warning("lm-eval-lrp: graph for %s doc %s failed: %s", record["task"], record["doc_id"], err)
            self.fallbacks[f"no graph: {type(err).__name__} at {_place(err)}: {str(err)[:160]}"] += 1
            return False
        for cause, n in (graph.meta.get("fallbacks") or {}).items():
            self.fallbacks[cause] += n
        if out_dir is not None:
            graph.write(out_dir / graph_filename(record["task"], record["doc_id"]))
        return True

    def _emit(self, record: Record, expl=None) -> Record:
        record["fingerprint"] = self.fingerprint
        record.setdefault("seconds", round(time.perf_counter() - self._start, 4))
        if self.writer is not None:
            nodes = expl.node_relevance if (expl is not None and self.cfg.nodes) else None
            self.writer.write(record, nodes, expl.node_names if expl is not None else None)
        self.records.append(record)
        return record
