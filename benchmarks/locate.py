"""Which token does each locator explain, against hand annotations of real failures?

For every failure of the dev set (``tests/data/locate_devset.jsonl``: one JSON per line with ``task``, ``doc_id``,
``model`` (label), ``chat_template``, ``prompt_ids``, ``output_ids``, ``output``, ``gold``, ``doc``, ``span``
[char_start, char_end) of the first real error in ``output``, ``note``), each locator alone and the default chain
of the task's kind locate the token to explain; reported per locator: the share of failures whose explained
token's char offset falls inside the annotated span, how many it located at all, and the cost per failure
(seconds, rollouts). ``gold`` (the first divergence from the teacher-forced gold, what lm-eval-lrp explained
before locators) counts as a hit when the divergence point, read in the output, lies in the span.

Every figure is reported for all rows and per half of the dev set's fixed split (``split_of``: design / held-out,
by a hash of task, model and document), and for the held-out rows that no locator was ever designed with in view
(``tuned_on: false``). Quote the held-out figures; tune only on the design half (``--split design``).

The rollout scorer is the task's own (filters + ``process_results``, ``lm_eval_lrp.lmeval.scoring``) on the
offline task overlays (``examples/local_tasks``); stop sequences are the task's ``until``.

    python benchmarks/locate.py --model_args pretrained=DIR,gguf_file=F.gguf --label SmolLM2-135M-Instruct
    python benchmarks/locate.py --devset tests/data/locate_devset.jsonl --limit 10 --output runs/locate.json
    python benchmarks/locate.py --split held-out --model_args ... --label ...    # the held-out half alone
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lm_eval_lrp.jsonl import numbered_objects  # noqa: E402
from lm_eval_lrp.locate import Budget, Chain, Context, Generation, Location, kind_of_task, make  # noqa: E402
from lm_eval_lrp.locate.confidence import confidence  # noqa: E402

FIELDS = {"task": str, "doc_id": int, "model": str, "chat_template": bool, "prompt_ids": list, "output_ids": list,
          "output": str}
LOCATORS = ("gold", "verifier", "rollout")
SPLITS = ("design", "held-out")


def split_of(row: dict) -> str:
    """The dev set's fixed split, by a rule decided before any locator output on the new rows was seen:
    ``held-out`` when sha256("TASK:MODEL:DOC_ID") read as an integer is odd, else ``design``. A row's half depends on
    its own key only (adding rows never moves another), and the chat / plain failures of one document by one model
    fall in the same half. Locators and their thresholds are tuned on the design half only
    (tests/data/README_locate_devset.md)."""
    digest = hashlib.sha256(f"{row['task']}:{row['model']}:{row['doc_id']}".encode()).hexdigest()
    return "held-out" if int(digest, 16) % 2 == 1 else "design"


def load_devset(path: str | Path, skipped: list | None = None) -> list[dict]:
    """The dev set's annotated rows, checked; a malformed line is refused naming the file and the line. Rows with
    ``span: null`` (no identifiable error, or not annotated yet) are left out (their places go to ``skipped``)."""
    rows, skipped = [], skipped if skipped is not None else []
    for where, row in numbered_objects(path):
        for key, kind in FIELDS.items():
            if not isinstance(row.get(key), kind):
                raise ValueError(f"{where}: {key!r} must be a {kind.__name__}")
        if row.get("span") is None:  # not annotated yet, or no identifiable error (the note says why)
            skipped.append(where)
            continue
        start, end = row["span"] if isinstance(row["span"], list) and len(row["span"]) == 2 else (None, None)
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(row["output"])):
            raise ValueError(f"{where}: span {row['span']} is not [char_start, char_end) inside the output")
        if not row["prompt_ids"] or not all(isinstance(i, int) for i in row["prompt_ids"] + row["output_ids"]):
            raise ValueError(f"{where}: prompt_ids/output_ids must be non-empty lists of token ids")
        row["where"] = where
        row["split"] = split_of(row)
        rows.append(row)
    return rows


def generation_of(row: dict, until=()) -> Generation:
    return Generation(row["prompt_ids"], row["output_ids"], row["output"], gold=row.get("gold"), doc=row.get("doc"),
                      task=row["task"], doc_id=row["doc_id"], prompt=row.get("prompt", ""), until=tuple(until),
                      max_gen_toks=row.get("max_gen_toks"))


def explained_offset(location, gen: Generation, ctx: Context) -> int | None:
    """Char offset into the output of the explained token's first visible character (a token ``' Sum'`` that starts
    with the space before an annotated ``Sum ...`` counts as inside it; a token of white space only keeps its
    start); for ``gold``, where the output leaves the gold (the divergence point read in the output: the text
    before it is shared by both), else None."""
    if location.output_offset is not None:
        start = location.output_offset
        if location.continuation is None and location.index < len(gen.output_ids):
            text = gen.output[start: ctx.offsets(gen.output_ids)[location.index + 1]]
            if text.strip():
                start += len(text) - len(text.lstrip())
        return start
    if location.continuation is None:
        return None
    shared = ctx.decode(location.continuation[: location.index])
    return len(shared) if gen.output.startswith(shared) else None


def evaluate(rows: list[dict], specs: dict[str, Callable[[dict], Chain]], make_ctx: Callable[[], Context],
             scorer_for: Callable[[dict], Callable[[str], bool] | None] = lambda row: None,
             until_for: Callable[[dict], list[str]] = lambda row: [], verbose: bool = False) -> dict:
    """Per spec (a name -> chain for a row): share of rows whose explained offset lies in the span, and cost."""
    report = {}
    for name, chain_of in specs.items():
        per = []
        for row in rows:
            gen = generation_of(row, until_for(row))
            calls = [0]
            scorer = scorer_for(row)

            def counted(text, _scorer=scorer):
                calls[0] += 1
                return _scorer(text)

            ctx = make_ctx().for_doc(counted if scorer is not None else None)
            start = time.perf_counter()
            result = chain_of(row).locate(gen, ctx)
            seconds = time.perf_counter() - start
            ctx.release()
            loc = result.location
            offset = explained_offset(loc, gen, ctx) if loc is not None else None
            s, e = row["span"]
            per.append({"where": row["where"], "task": row["task"], "doc_id": row["doc_id"], "model": row["model"],
                        "split": row.get("split") or split_of(row), "tuned_on": bool(row.get("tuned_on", True)),
                        "locator": loc.locator if loc else None, "offset": offset, "span": [s, e],
                        "hit": offset is not None and s <= offset < e, "located": loc is not None,
                        "reached_max_gen_toks": gen.reached_max_gen_toks,
                        "error": result.error, "reason": loc.reason if loc else result.reason,
                        "seconds": round(seconds, 3), "rollouts": calls[0],
                        "budget_exhausted": bool(loc and loc.budget_exhausted),
                        "confidence": confidence(loc)[0] if loc is not None else None,
                        "confidence_why": confidence(loc)[1] if loc is not None else None,
                        "location": _kept(loc)})
            if verbose:
                c = per[-1]
                print(f"  {name}: {c['where']} offset {c['offset']} span {c['span']} {'HIT' if c['hit'] else 'miss'} "
                      f"({c['seconds']:.1f} s, {c['rollouts']} rollouts)", file=sys.stderr, flush=True)
        report[name] = {**summarise(per), "cases": per,
                        "splits": {half: summarise([p for p in per if p["split"] == half]) for half in SPLITS}}
        fresh = [p for p in per if p["split"] == "held-out" and not p["tuned_on"]]
        report[name]["splits"]["held-out, never tuned on"] = summarise(fresh)
    return report


def _kept(loc: Location | None) -> dict | None:
    """What a case keeps of its location for reading later: token, contrast, agreeing locators, rollouts."""
    if loc is None:
        return None
    return {"index": loc.index, "target": loc.target, "contrast": loc.contrast, "agreeing": list(loc.agreeing),
            "final_answer": bool(loc.final_answer),
            "explains": "output" if loc.continuation is None else "gold",
            "rollouts": [{"position": r.position, "forced": r.forced, "forced_token": r.forced_token,
                          "verdict": r.verdict, "tokens": r.tokens} for r in loc.rollouts]}


def summarise(per: list[dict]) -> dict:
    """Hits, share in span, share located, errors and cost of some cases."""
    n = len(per)
    return {
        "failures": n,
        "hits": sum(p["hit"] for p in per),
        "hit_share": round(sum(p["hit"] for p in per) / n, 3) if n else None,
        "located_share": round(sum(p["located"] for p in per) / n, 3) if n else None,
        "errors": sum(p["error"] is not None for p in per),
        "seconds_per_failure": round(statistics.mean(p["seconds"] for p in per), 3) if n else None,
        "rollouts_per_failure": round(statistics.mean(p["rollouts"] for p in per), 2) if n else None,
        "by_locator": dict(Counter(p["locator"] or "none" for p in per)),
        "by_confidence": dict(Counter(p.get("confidence") or "none" for p in per)),
        "confirmed_share": round(sum(p.get("confidence") == "confirmed" for p in per) / n, 3) if n else None,
        "confirmed_in_span": (round(sum(p["hit"] for p in per if p.get("confidence") == "confirmed")
                                    / sum(p.get("confidence") == "confirmed" for p in per), 3)
                              if any(p.get("confidence") == "confirmed" for p in per) else None),
        # outputs that ran to max_gen_toks, and the in-span hits among them (the located step may be right work)
        "reached_max_gen_toks": sum(bool(p.get("reached_max_gen_toks")) for p in per),
        "hits_reached_max_gen_toks": sum(p["hit"] for p in per if p.get("reached_max_gen_toks")),
    }


def print_report(report: dict) -> None:
    """One line per locator and half: all rows, the design half, the held-out half (the figure to quote)."""
    width = max([22, *(len(name) + 2 for name in report)])
    print(f"{'locator':<{width}}{'half':<26}{'failures':>9}{'in span':>9}{'located':>9}{'errors':>8}{'s/failure':>11}"
          f"{'rollouts':>10}{'confirmed':>10}{'conf. in span':>14}")
    for name, r in report.items():
        for half, h in [("all", r), *r.get("splits", {}).items()]:
            if not h["failures"]:
                print(f"{name:<{width}}{half:<26}{0:>9}")
                continue
            cis = h.get("confirmed_in_span")
            print(f"{name:<{width}}{half:<26}{h['failures']:>9}{h['hits']:>5} {h['hit_share']:>4.2f}"
                  f"{h['located_share']:>9.2f}{h['errors']:>8}{h['seconds_per_failure']:>11.2f}"
                  f"{h['rollouts_per_failure']:>10.1f}{h.get('confirmed_share') or 0:>10.2f}"
                  f"{'–' if cis is None else format(cis, '.2f'):>14}")


# --- the real run: a model, lm-eval's task scorers ------------------------------------------------------------


def _load(model_args: str | None):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if model_args is None:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _common import load_model

        return load_model()
    kwargs = dict(kv.split("=", 1) for kv in model_args.split(","))
    path = kwargs.pop("pretrained")
    tok = AutoTokenizer.from_pretrained(path, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs).eval()
    return model, tok


def _tasks(names: set[str], work: Path) -> dict:
    import importlib.util

    from lm_eval.tasks import TaskManager

    spec = importlib.util.spec_from_file_location("make_tasks", ROOT / "examples" / "local_tasks" / "make_tasks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    local = [n for n in names if n in module.TASK_NAMES]
    out = module.write_local_tasks(work, local)
    return TaskManager(include_path=str(out)).load(sorted(names))["tasks"]


def main(argv=None) -> int:
    import os

    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--processbench" or a.startswith("--processbench=") for a in argv):  # benchmarks/processbench.py
        spec = importlib.util.spec_from_file_location("bench_processbench", Path(__file__).with_name("processbench.py"))
        processbench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(processbench)
        return processbench.main(argv)

    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(key, "1")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devset", default=str(ROOT / "tests" / "data" / "locate_devset.jsonl"))
    p.add_argument("--model_args", default=None, help="pretrained=DIR[,gguf_file=F.gguf] (default: SmolLM2-135M-Instruct)")
    p.add_argument("--label", default=None, help="use the dev set rows of this model label (default: the most common)")
    p.add_argument("--locators", default=",".join(LOCATORS),
                   help="each alone (a+b: one earliest-of link), plus the default chain of the task's kind")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--split", choices=("all", *SPLITS), default="all",
                   help="only the rows of one half of the dev set (split_of: the held-out half is never tuned on)")
    p.add_argument("--rows", choices=("all", "tuned", "untuned"), default="all",
                   help="only the rows a locator was designed on (tuned_on: true), or only the others")
    p.add_argument("--tasks", default=None, help="only the dev set rows of these tasks (comma-separated names)")
    p.add_argument("--no_chain", action="store_true", help="leave out the default chain (it repeats the rollout cost)")
    p.add_argument("--reference_args", default=None,
                   help="also the reference locator and the default chain with a reference, with this model "
                        "(pretrained=DIR[,gguf_file=F.gguf]; same tokenizer)")
    p.add_argument("--judge", default=None,
                   help="also the judge locator with these judges (--lrp_judge's form: model=NAME,base_url=URL[;...])")
    p.add_argument("--prm", default=None,
                   help="also the prm locator with this process reward model (--lrp_prm's form: pretrained=PATH[,...]); "
                        "--processbench FILE scores locators on ProcessBench's format instead (benchmarks/processbench.py)")
    p.add_argument("--topk", type=int, default=10)
    p.add_argument("--max_rollouts", type=int, default=24)
    p.add_argument("--max_new_tokens", type=int, default=160)
    p.add_argument("--width", type=int, default=3)
    p.add_argument("--work", default=str(ROOT / "runs" / "bench-locate"))
    p.add_argument("--output", default=None, help="write the report (with every case) as JSON here")
    args = p.parse_args(argv)

    unannotated: list[str] = []
    rows = load_devset(args.devset, unannotated)
    if unannotated:
        print(f"{len(unannotated)} rows without a span (no identifiable error or not annotated) left out")
    labels = Counter(r["model"] for r in rows)
    if not rows:
        print(f"no annotated rows in {args.devset}")
        return 1
    label = args.label or labels.most_common(1)[0][0]
    tasks = set(args.tasks.split(",")) if args.tasks else None
    rows = [r for r in rows if r["model"] == label and (tasks is None or r["task"] in tasks)
            and args.split in ("all", r["split"])
            and args.rows in ("all", "tuned" if r.get("tuned_on", True) else "untuned")][: args.limit]
    halves = Counter(r["split"] for r in rows)
    print(f"{len(rows)} failures of {label} ({dict(labels)} in {args.devset}); design {halves['design']}, "
          f"held-out {halves['held-out']}")
    model, tok = _load(args.model_args)
    tasks = _tasks({r["task"] for r in rows}, Path(args.work) / "tasks")
    from lm_eval_lrp.lmeval.scoring import stop_sequences, task_scorer

    budget = Budget(args.max_rollouts, args.max_new_tokens, args.width)
    base = Context.from_tokenizer(tok, model, topk=args.topk, budget=budget)
    specs = {name: (lambda row, n=name: Chain.from_names(n)) for name in args.locators.split(",") if name}
    if not args.no_chain:
        specs["default chain"] = lambda row: Chain.default(kind_of_task(row["task"]))
    if args.judge:
        from lm_eval_lrp.lmeval.judge import make_judges

        judge = make("judge", ask=make_judges(args.judge))
        specs["judge"] = lambda row: Chain([judge])
    if args.prm:
        from lm_eval_lrp.model_args import parse_model_args
        from lm_eval_lrp.locate.prm import load_prm

        prm, threshold = load_prm(parse_model_args(args.prm), device=str(model.device))
        prm_locator = make("prm", prm=prm, threshold=threshold)
        specs["prm"] = lambda row: Chain([prm_locator])
    if args.reference_args:
        from lm_eval_lrp.model_args import LOAD_KEYS
        from lm_eval_lrp.reference_model import split_reference_args

        load_args, ref_options = split_reference_args(dict(kv.split("=", 1) for kv in args.reference_args.split(",")),
                                                      LOAD_KEYS)
        ref_model, ref_tok = _load(",".join(f"{k}={v}" for k, v in load_args.items()))
        reference = make("reference", model=ref_model, tokenizer=ref_tok, evaluated_tokenizer=tok, **ref_options)
        specs["reference"] = lambda row: Chain([reference])
        if not args.no_chain:  # the default chain of a run given --lrp_reference_model
            specs["default chain with reference"] = lambda row: Chain.default(
                kind_of_task(row["task"]), {"reference": {"model": ref_model, **ref_options}})
    report = evaluate(rows, specs, lambda: base,
                      scorer_for=lambda row: task_scorer(tasks[row["task"]], row["doc"]),
                      until_for=lambda row: stop_sequences(tasks[row["task"]]), verbose=True)
    print_report(report)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"label": label, "devset": args.devset, "budget": vars(args),
                                                 "report": report}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
