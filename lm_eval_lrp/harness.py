"""The harness loop: after lm-eval judged the documents, explain each wrong one on the same model object.

The route to the tasks is lm-eval's own ``evaluate(lm, task_dict, ...)`` call, which :func:`install` wraps
(transparently for every model but ``hf-lrp``). Inside, lm-eval runs unchanged with ``log_samples=True``; its
logged samples carry the task's own verdicts (filters, ``process_results``, metrics). Samples the caller did not
ask for are removed again, so results and outputs equal those of the same run without attribution, plus an
``lrp`` summary. Under data parallelism rank 0 judges, every rank explains its share and writes its own shard,
and rank 0 merges the shards.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import torch
from rich.markup import escape

from .artifacts import AttributionWriter, read_records, rewrite_records, task_of
from .failures import Failure, find_failures, generate_until_case, multiple_choice_case
from .lrp import LRPForward, explain, explain_sequences
from .model import HFLRP
from .records import base_record, error_record, explained_record, skipped_record
from .summary import summarize

log = logging.getLogger("lm_eval_lrp")

OOM_ADVICE = "out of memory during attribution: use a shorter context (lrp_max_length) or turn node relevance off (lrp_nodes=false)"


def _unwrap(lm):
    """The HFLRP behind lm-eval's wrappers (``--use_cache`` wraps the model in a CachingLM)."""
    seen = 0
    while lm is not None and not isinstance(lm, HFLRP) and hasattr(lm, "lm") and seen < 3:
        lm, seen = lm.lm, seen + 1
    return lm if isinstance(lm, HFLRP) else None


def install() -> None:
    """Wrap ``lm_eval.evaluator.evaluate`` once; models other than ``hf-lrp`` pass straight through."""
    import lm_eval.evaluator as evaluator

    if getattr(evaluator.evaluate, "_lm_eval_lrp", False):
        return
    original = evaluator.evaluate

    @functools.wraps(original)
    def evaluate(*args, **kwargs):
        lm = kwargs.get("lm", args[0] if args else None)
        model = _unwrap(lm)
        if model is None:
            return original(*args, **kwargs)
        wanted = kwargs.get("log_samples", True)
        kwargs["log_samples"] = True
        results = original(*args, **kwargs)
        task_dict = kwargs.get("task_dict", args[1] if len(args) > 1 else None)
        samples = results.get("samples") if results is not None else None
        try:
            summary = attribute_run(model, task_dict, samples, results)
        except Exception as err:  # noqa: BLE001 - attribution never costs the user the evaluation
            log.exception("lm-eval-lrp: attribution failed; the evaluation's results are kept")
            summary = {"error": f"{type(err).__name__}: {err}"}
        if results is not None:
            results["lrp"] = summary
            if not wanted:
                results.pop("samples", None)
        return results

    evaluate._lm_eval_lrp = True
    evaluator.evaluate = evaluate


def run_dir(model: HFLRP) -> Path | None:
    """``<output_path>/<model_name_sanitized>``, exactly where lm-eval writes its results."""
    if not model.lrp.output_path:
        return None
    from lm_eval.loggers.evaluation_tracker import GeneralConfigTracker
    from lm_eval.loggers.evaluation_tracker import sanitize_model_name

    path = Path(model.lrp.output_path)
    if path.suffix == ".json":
        return path.parent
    name = GeneralConfigTracker._get_model_name(model.lrp_name_args) or "model"
    return path / sanitize_model_name(name)


def writable(path: Path | None, console) -> Path | None:
    """``path`` if attribution files can be written there; otherwise say so and keep records in memory only."""
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".lm_eval_lrp_write_test"
        probe.write_text("")
        probe.unlink()
        return path
    except OSError as err:
        console.print(f"[red]lm-eval-lrp:[/] cannot write attributions to {path} ({err.strerror or err}); "
                      "choose a writable --output_path. Failures are still attributed and summarised here.", soft_wrap=True)
        return None


def _task_objects(task_dict) -> dict:
    """Task name -> task object, from what ``simple_evaluate`` hands ``evaluate`` (``{"tasks": ..., "groups": ...}``)."""
    if isinstance(task_dict, dict) and "tasks" in task_dict:
        return dict(task_dict["tasks"])
    return {k: v for k, v in (task_dict or {}).items() if hasattr(v, "process_results")}


class TeacherForcedForward:
    """``greedy(ids, start)`` for :func:`generate_until_case` from one forward under the LRP rules, kept so that
    the failure it locates is explained by a backward from that same forward (no second forward)."""

    def __init__(self, model, rule: str, nodes: bool):
        self.model, self.rule, self.nodes = model, rule, nodes
        self.forward: LRPForward | None = None

    def __call__(self, ids: list[int], start: int) -> list[int]:
        self.release()
        self.forward = LRPForward(self.model, ids, rule=self.rule, nodes=self.nodes)
        return self.forward.greedy(start)

    def explain(self, case, topk: int):
        """The case's explanation from the kept forward, or None if the case is not a prefix of it."""
        fwd = self.forward
        if fwd is None or len(case.ids) > len(fwd) or fwd.ids[: len(case.ids)].tolist() != list(case.ids):
            return None
        return fwd.explain(case.position, case.target, case.contrast, topk=topk).prefix(len(case.ids))

    def release(self) -> None:
        if self.forward is not None:
            self.forward.release()
            self.forward = None


class TaskAttribution:
    """Explains the failures of one task and writes their records."""

    def __init__(self, model: HFLRP, task, hook, writer: AttributionWriter | None):
        self.model, self.task, self.hook, self.writer = model, task, hook, writer
        self.cfg = model.lrp
        self.records: list[dict] = []
        self.max_length = self.cfg.max_length or model.max_length
        self.fingerprint = fingerprint(model)
        self.write_seconds = 0.0  # writing records and node sidecars
        self._start = time.perf_counter()

    def case(self, failure: Failure, teacher: TeacherForcedForward):
        if failure.kind == "multiple_choice":
            return multiple_choice_case(failure, self.task, self.model._encode_pair, self.max_length)
        return generate_until_case(
            failure,
            self.task,
            self.hook,
            self.model._encode_pair,
            teacher,
            self.model.tokenizer.decode,
            self.max_length,
        )

    def explain_one(self, failure: Failure) -> dict:
        tok = self.model.tokenizer
        base = base_record(failure, None, tok)
        start = self._start = time.perf_counter()
        teacher = TeacherForcedForward(self.model.model, self.cfg.rule, self.cfg.nodes)
        try:
            case = self.case(failure, teacher)
            base = base_record(failure, case, tok)
            if case.skip:
                return self._emit(skipped_record(base, case.skip))
            expl = teacher.explain(case, self.cfg.topk)
            teacher.release()
            if expl is None:
                expl = explain(self.model.model, case.ids, case.position, case.target, case.contrast,
                               rule=self.cfg.rule, topk=self.cfg.topk, nodes=self.cfg.nodes)
            if not (expl.finite and torch.isfinite(torch.tensor(expl.delta))):
                return self._emit(error_record(base, "non-finite relevance or logits (NaN/inf): not written as numbers"))
            if expl.delta <= self.cfg.min_delta:
                record = skipped_record(base, f"weak preference (delta <= {self.cfg.min_delta:g})", case, tok, expl.delta)
                record["timings"] = {k: round(v, 4) for k, v in expl.seconds.items()}
                return self._emit(record)
            segments = self.hook.segments(self.task, failure.doc, case.prompt) if case.prompt else []
            record = explained_record(base, case, expl, tok, segments, time.perf_counter() - start)
            if self.cfg.faithfulness:
                from .faithfulness import faithfulness

                t = time.perf_counter()
                record["faithfulness"] = faithfulness(self.model.model, case.ids, case.position, case.target,
                                                      case.contrast, expl.input_relevance, seed=failure.doc_id)
                record["timings"]["faithfulness"] = round(time.perf_counter() - t, 4)
            if self.cfg.sequence and case.sequence is not None:
                t = time.perf_counter()
                seq = explain_sequences(self.model.model, *case.sequence, rule=self.cfg.rule)
                record["sequence"] = {"delta": seq.delta, "logprob_wrong": seq.logprob_wrong, "logprob_gold": seq.logprob_gold,
                                      "context_relevance": [round(float(x), 7) for x in seq.context_relevance]}
                record["timings"]["sequence"] = round(time.perf_counter() - t, 4)
            record["seconds"] = round(time.perf_counter() - start, 4)
            return self._emit(record, expl)
        except torch.OutOfMemoryError:
            return self._emit(error_record(base, "out of memory", OOM_ADVICE))
        except RuntimeError as err:
            if "out of memory" in str(err).lower() or "can't allocate memory" in str(err).lower():
                return self._emit(error_record(base, "out of memory", OOM_ADVICE))
            log.warning("lm-eval-lrp: %s doc %s: %s", failure.task, failure.doc_id, err)
            return self._emit(error_record(base, f"{type(err).__name__}: {err}"))
        except Exception as err:  # noqa: BLE001 - one bad document never stops the others
            log.warning("lm-eval-lrp: %s doc %s: %s", failure.task, failure.doc_id, err)
            return self._emit(error_record(base, f"{type(err).__name__}: {err}"))
        finally:
            teacher.release()

    def build_graphs(self, out_dir: Path | None) -> int:
        """Attribution graphs for the attributed records (all, or the top N by Δℓ), written beside the records."""
        from .graph import build_graph, graph_filename

        chosen = sorted((r for r in self.records if r["status"] == "attributed"), key=lambda r: -r["delta"])
        written = 0
        for record in chosen[: self.cfg.graph_count(len(chosen))]:
            try:
                graph = build_graph(self.model.model, record["token_ids"], record["position"], record["target"]["id"],
                                    record["contrast"]["id"], rule=self.cfg.rule, prune=self.cfg.graph_prune,
                                    tokens=record["tokens"], record=record)
            except Exception as err:  # noqa: BLE001 - a graph is an extra; the records stay
                log.warning("lm-eval-lrp: graph for %s doc %s failed: %s", record["task"], record["doc_id"], err)
                continue
            if out_dir is not None:
                graph.write(out_dir / graph_filename(record["task"], record["doc_id"]))
            written += 1
        return written

    def _emit(self, record: dict, expl=None) -> dict:
        record["fingerprint"] = self.fingerprint
        record.setdefault("seconds", round(time.perf_counter() - self._start, 4))
        if self.writer is not None:
            t = time.perf_counter()
            nodes = expl.node_relevance if (expl is not None and self.cfg.nodes) else None
            self.writer.write(record, nodes, expl.node_names if expl is not None else None)
            self.write_seconds += time.perf_counter() - t
        self.records.append(record)
        return record


def fingerprint(model: HFLRP) -> str:
    """What a record's content depends on besides the document: the model and the attribution settings."""
    settings = {k: v for k, v in asdict(model.lrp).items() if k not in ("output_path", "max_failures", "hooks_path", "graph", "graph_prune")}
    source = {"model": model.lrp_name_args, "revision": getattr(model, "revision", None), "dtype": str(model.model.dtype)}
    blob = json.dumps({"settings": settings, "source": source}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def resume_state(out_dir: Path | None, task: str, failures: list[Failure], fp: str) -> tuple[Path | None, list[dict]]:
    """Records of an earlier (possibly killed) run of the same command that can be kept, and their file.

    The newest ``attributions_<task>_*.jsonl`` whose records all carry this run's fingerprint is reused: records of
    documents that are still failures (same doc_hash) are kept, error records are dropped (redone), and a partial
    last line is cut away.
    """
    if out_dir is None or not out_dir.is_dir():
        return None, []
    wanted = {f.doc_id: f.sample.get("doc_hash") for f in failures}
    for path in sorted(out_dir.glob("attributions_*.jsonl"), reverse=True):
        if task_of(path) != task:
            continue
        records = read_records(path)
        if not records or any(r.get("fingerprint") != fp for r in records):
            continue
        keep = [r for r in records if r.get("status") != "error" and wanted.get(r["doc_id"], object()) == r.get("doc_hash")]
        rewrite_records(path, keep)
        return path, keep
    return None, []


def _select(failures: list[Failure], cap: int | None) -> list[Failure]:
    return failures if cap is None else failures[: int(cap)]


def judge(model: HFLRP, tasks: dict, samples: dict) -> tuple[dict[str, list[Failure]], list[str]]:
    """Rank 0: the failures of every task by its own metrics."""
    by_task, notes = {}, []
    for name, task_samples in samples.items():
        task = tasks.get(name)
        if task is None:
            continue
        output_type = task.get_config("output_type") or getattr(task, "OUTPUT_TYPE", None)
        hib = task.higher_is_better() if hasattr(task, "higher_is_better") else {}
        failures, task_notes = find_failures(name, output_type, task_samples, hib, model.lrp.metric, model.lrp.filter)
        by_task[name] = _select(sorted(failures, key=lambda f: f.doc_id), model.lrp.max_failures)
        notes += task_notes
    return by_task, notes


def plan(model: HFLRP, task_dict, samples: dict | None, console) -> dict:
    """Rank 0: judge the samples, find what an earlier run of the same command already attributed, name the files."""
    if model.lrp_unsupported:
        return {"error": model.lrp_unsupported}
    by_task, notes = judge(model, _task_objects(task_dict), samples or {})
    for note in dict.fromkeys(notes):
        console.print(f"[yellow]lm-eval-lrp:[/] {escape(note)}", soft_wrap=True)
    stamp = datetime.now().isoformat().replace(":", "-")
    fp, out = fingerprint(model), writable(run_dir(model), console)
    files, done = {}, {}
    for name, failures in by_task.items():
        path, kept = resume_state(out, name, failures, fp)
        files[name] = path or (out / f"attributions_{name}_{stamp}.jsonl" if out is not None else None)
        done[name] = kept
        if kept:
            console.print(f"[yellow]lm-eval-lrp:[/] {name}: resuming {path.name}, {len(kept)} records kept", soft_wrap=True)
    return {"files": files, "done": done, "failures": by_task, "notes": list(dict.fromkeys(notes))}


def attribute_share(model: HFLRP, task_dict, payload: dict, rank: int, world: int, console) -> dict[str, list[dict]]:
    """Explain this rank's share of the failures not yet attributed; write them (a shard when world > 1)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from task_hooks import HookRegistry, load_hooks_from

    hooks = HookRegistry(load_hooks_from(model.lrp.hooks_path) if model.lrp.hooks_path else None)
    tasks = _task_objects(task_dict)
    done_ids = {t: {r["doc_id"] for r in recs} for t, recs in payload["done"].items()}
    todo = {t: [f for f in fs if f.doc_id not in done_ids[t]] for t, fs in payload["failures"].items()}
    mine = {t: [f for i, f in enumerate(fs) if i % world == rank] for t, fs in todo.items()}
    total = sum(len(v) for v in mine.values())
    records: dict[str, list[dict]] = {}
    columns = (TextColumn("[bold]LRP[/] {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=total == 0) as progress:
        bar = progress.add_task("attributing failures", total=total)
        for name, failures in mine.items():
            task = tasks[name]
            final = payload["files"].get(name)
            writer = None
            if final is not None:
                shard = final if world == 1 else final.with_name(final.stem + f".rank{rank}.jsonl")
                writer = AttributionWriter(shard, sidecar=final.with_suffix(".nodes"))
            job = TaskAttribution(model, task, hooks.for_task(name, task.get_config("output_type")), writer)
            try:
                for failure in failures:
                    progress.update(bar, description=f"{name} doc {failure.doc_id}")
                    job.explain_one(failure)
                    progress.advance(bar)
            finally:
                if writer is not None:
                    writer.close()
            if model.lrp.graph is not None:
                progress.update(bar, description=f"{name}: attribution graphs")
                job.build_graphs(final.parent if final is not None else None)
            records[name] = (payload["done"][name] if rank == 0 else []) + job.records
            payload.setdefault("write_seconds", {})[name] = job.write_seconds
    return records


def attribute_run(model: HFLRP, task_dict, samples: dict | None, results: dict | None) -> dict:
    """The whole attribution step of one evaluation (every rank calls it; rank 0 returns the summary)."""
    from rich.console import Console

    console = Console(stderr=True)
    rank, world = model.rank, model.world_size
    payload = plan(model, task_dict, samples, console) if rank == 0 else None
    if world > 1:
        box = [payload]
        torch.distributed.broadcast_object_list(box, src=0)
        payload = box[0]
    if "error" in payload:
        return {"error": payload["error"], "tasks": {}}

    records = attribute_share(model, task_dict, payload, rank, world, console)
    files = {name: path for name, path in payload["files"].items() if path is not None}
    if world > 1:
        model.barrier()
        gathered = model.gather_object(records, dst=0)
        if rank != 0:
            return {}
        merged: dict[str, list[dict]] = {}
        for part in gathered:
            for name, recs in part.items():
                merged.setdefault(name, []).extend(recs)
        records = {n: sorted(r, key=lambda x: x["doc_id"]) for n, r in merged.items()}
        _merge_shards(files, world)

    summary = summarize(records, payload, results, files, model)
    from .console import print_summary

    print_summary(summary, console)
    return summary


def _merge_shards(files: dict[str, Path], world: int) -> None:
    for name, final in files.items():
        shards = [final.with_name(final.stem + f".rank{r}.jsonl") for r in range(world)]
        records = read_records(final) if final.exists() else []  # kept by a resume
        for shard in shards:
            if shard.exists():
                records.extend(read_records(shard))
        records.sort(key=lambda r: r["doc_id"])
        rewrite_records(final, records)
        for shard in shards:
            if shard.exists():
                os.remove(shard)
