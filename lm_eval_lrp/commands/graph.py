"""``lm-eval-lrp graph RECORD_SOURCE --doc_id N``: the attribution graph of one stored record, no evaluation re-run.

RECORD_SOURCE is an ``attributions_<task>_<timestamp>.jsonl`` file or a run folder (``--output_path`` or its model
sub-folder; ``--task`` picks the task when it holds several). The record gives the token ids, the explained
position, the target and contrast tokens and the LRP rule; the model comes from ``--model_args``. The graph is
written as ``graph_<task>_<doc_id>.json`` beside the record file (or to ``--output``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..loading import load_model
from ..model_args import load_spec, parse_model_args


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-eval-lrp graph",
        description="Build the cross-layer attribution graph (contrastive LRP) of one attributed record.",
    )
    p.add_argument("source", metavar="RECORD_SOURCE", help="attributions_*.jsonl file or run folder")
    p.add_argument("--doc_id", required=True, help="doc_id of the record")
    p.add_argument("--task", help="task name (needed when the run folder holds several tasks)")
    p.add_argument("--model_args", required=True, help="pretrained=PATH_OR_NAME[,gguf_file=F][,revision=R][,trust_remote_code=true]")
    p.add_argument("--prune", default="mass:0.85", help="mass:P (default mass:0.85) | threshold:TAU | none")
    p.add_argument("--node_threshold", type=float, default=0.01, help="skip target nodes with |relevance| below this (default 0.01)")
    p.add_argument("--batch_size", type=int, default=None, help="seeds per backward where one is needed (default: from free memory)")
    p.add_argument("--rule", choices=("attnlrp", "cp"), help="override the record's LRP rule")
    p.add_argument("--neurons", type=int, default=0, metavar="K",
                   help="also write neuron-level relevance for the K most relevant graph nodes (neurons_<task>_<doc_id>.json)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--output", "-o", help="graph file to write (default: graph_<task>_<doc_id>.json beside the records)")
    return p


def find_record(source: str | Path, doc_id: str, task: str | None) -> tuple[dict, Path, str]:
    """(record, its JSONL file, task name used in file names)."""
    from ..artifacts import RECORD_NAME, load_run, read_records

    source = Path(source)
    if source.is_file():
        files = [(source, (RECORD_NAME.match(source.name).group("task") if RECORD_NAME.match(source.name) else None))]
    else:
        run = load_run(source)
        tasks = run.tasks
        if task is not None:
            if task not in tasks:
                raise ValueError(f"task {task!r} not in {source} (tasks: {', '.join(sorted(tasks)) or 'none'})")
            tasks = {task: tasks[task]}
        elif len(tasks) > 1:
            raise ValueError(f"{source} holds several tasks ({', '.join(sorted(tasks))}): pass --task")
        files = [(t.path, name) for name, t in tasks.items()]
    for path, file_task in files:
        for record in read_records(path):
            if str(record.get("doc_id")) != str(doc_id):
                continue
            if task is not None and record.get("task") not in (task, None) and file_task != task:
                continue
            return record, path, file_task or record.get("task") or "task"
    raise ValueError(f"no record with doc_id {doc_id} in {source}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        record, path, task = find_record(args.source, args.doc_id, args.task)
        model_args = parse_model_args(args.model_args)
        spec = load_spec(model_args)
        from ..graph.prune import parse_prune

        prune = parse_prune(args.prune)
    except (FileNotFoundError, ValueError) as err:
        print(f"lm-eval-lrp graph: {err}", file=sys.stderr)
        return 2
    missing = [k for k in ("token_ids", "position", "target") if record.get(k) is None]
    if record.get("status") not in (None, "attributed") or missing:
        why = f"status {record.get('status')!r}" + (f", missing {', '.join(missing)}" if missing else "")
        print(f"lm-eval-lrp graph: record doc_id={args.doc_id} has no attribution to graph ({why})", file=sys.stderr)
        return 2

    from ..graph import build_graph, graph_filename
    from ..graph.refine import refine

    t0 = time.time()
    model = load_model(spec, args.device, dtype=str(model_args.get("dtype", "float32")))
    target = record["target"]["id"] if isinstance(record["target"], dict) else record["target"]
    contrast = record.get("contrast")
    contrast = contrast.get("id") if isinstance(contrast, dict) else contrast
    rule = args.rule or record.get("rule") or "attnlrp"
    t1 = time.time()
    graph = build_graph(
        model, record["token_ids"], int(record["position"]), int(target), None if contrast is None else int(contrast),
        rule=rule, node_threshold=args.node_threshold, prune=prune, batch_size=args.batch_size,
        tokens=record.get("tokens"), record=record,
    )
    out = Path(args.output) if args.output else path.parent / graph_filename(task, record["doc_id"])
    graph.write(out)
    t2 = time.time()
    print(f"{graph.summary()} (Δℓ = {graph.meta['delta']:.3f}, {t2 - t1:.1f} s; model load {t1 - t0:.1f} s)")
    print(f"wrote {out}")
    if args.neurons:
        neurons = refine(model, graph, max_nodes=args.neurons)
        npath = out.with_name(out.name.replace("graph_", "neurons_", 1) if out.name.startswith("graph_") else out.stem + ".neurons.json")
        npath.write_text(json.dumps(neurons), encoding="utf-8")
        print(f"wrote {npath}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
