"""ProcessBench-format scoring of the text-only locators: which step of a solution is the first wrong one?

    python benchmarks/locate.py --processbench tests/data/processbench_sample.jsonl
    python benchmarks/locate.py --processbench FILE --prm pretrained=Qwen/Qwen2.5-Math-PRM-7B,trust_remote_code=true
    python benchmarks/locate.py --processbench FILE --judge "pretrained=PATH;model=NAME,base_url=URL"

Each line of FILE: ``problem``, ``steps`` (a list of texts) and ``label`` (the index of the earliest wrong step, or
-1 when every step is correct), as ProcessBench publishes it. A locator reads the solution (the steps joined by a
blank line); the step holding the character it points at is its answer, and finding nothing is the answer -1.
Scored as ProcessBench scores: the accuracy on erroneous solutions (the exact step), the accuracy on correct ones
(-1), and F1, their harmonic mean. Text-only: ``trajectory`` and ``arithmetic`` read the text; ``judge`` asks its
judges (``--judge``, the form of ``--lrp_judge``); ``prm`` scores the given steps in batches (``--prm``, the form of
``--lrp_prm``; the first step below its threshold). No evaluated model is loaded.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

from lm_eval_lrp.jsonl import numbered_objects
from lm_eval_lrp.locate import Chain, Context, Generation, make

JOIN = "\n\n"


def load(path: str | Path) -> list[dict]:
    """The rows of a ProcessBench-format JSONL file; a malformed line is named (file:line)."""
    rows = []
    for where, row in numbered_objects(path):
        steps, label = row.get("steps"), row.get("label")
        if not isinstance(row.get("problem"), str):
            raise ValueError(f"{where}: needs 'problem' (text)")
        if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
            raise ValueError(f"{where}: needs 'steps' (a non-empty list of texts)")
        if isinstance(label, bool) or not isinstance(label, int) or not -1 <= label < len(steps):
            raise ValueError(f"{where}: 'label' must be -1 or the index of a step (0..{len(steps) - 1}), got {label!r}")
        rows.append(row)
    return rows


def text_context() -> Context:
    """A context without a model: one token per character (text-only locators need offsets, not a vocabulary)."""
    return Context(decode=lambda ids: "".join(map(chr, ids)), encode=lambda text: [ord(c) for c in text])


def generation(row: dict) -> tuple[Generation, list[int]]:
    """The solution as a generation, and each step's first character in its text."""
    starts, pos = [], 0
    for step in row["steps"]:
        starts.append(pos)
        pos += len(step) + len(JOIN)
    output = JOIN.join(row["steps"])
    return Generation([ord(c) for c in row["problem"]] or [32], [ord(c) for c in output], output,
                      doc={"problem": row["problem"]}, task="processbench", doc_id=int(row.get("doc_id", 0)),
                      prompt=row["problem"]), starts


def step_at(starts: list[int], offset: int | None) -> int:
    if offset is None:
        return -1
    return max(i for i, s in enumerate(starts) if s <= offset) if offset >= 0 else 0


def predict_with(chain: Chain) -> Callable[[list[dict]], list[int]]:
    def predict(rows: list[dict]) -> list[int]:
        out = []
        for row in rows:
            gen, starts = generation(row)
            ctx = text_context()
            result = chain.locate(gen, ctx)
            loc = result.location
            out.append(-1 if loc is None or loc.continuation is not None else step_at(starts, loc.output_offset))
        return out

    return predict


def predict_with_prm(prm, threshold: float) -> Callable[[list[dict]], list[int]]:
    from lm_eval_lrp.locate.prm import first_low

    def predict(rows: list[dict]) -> list[int]:
        scores = prm.score([(row["problem"], row["steps"]) for row in rows])  # batched
        return [-1 if (i := first_low(s, threshold)) is None else i for s in scores]

    return predict


def f1_score(labels: list[int], predictions: list[int]) -> dict:
    """ProcessBench's figures: accuracy on erroneous solutions, on correct ones, and their harmonic mean."""
    err = [p == y for y, p in zip(labels, predictions) if y >= 0]
    ok = [p == -1 for y, p in zip(labels, predictions) if y < 0]
    acc_err = sum(err) / len(err) if err else None
    acc_ok = sum(ok) / len(ok) if ok else None
    f1 = None
    if acc_err is not None and acc_ok is not None:
        f1 = 0.0 if acc_err + acc_ok == 0 else 2 * acc_err * acc_ok / (acc_err + acc_ok)
    return {"erroneous": len(err), "correct": len(ok), "acc_erroneous": acc_err, "acc_correct": acc_ok, "f1": f1}


def score(rows: list[dict], predictors: dict[str, Callable[[list[dict]], list[int]]]) -> dict:
    labels = [row["label"] for row in rows]
    report = {}
    for name, predict in predictors.items():
        start = time.perf_counter()
        predictions = predict(rows)
        report[name] = {**f1_score(labels, predictions), "seconds": round(time.perf_counter() - start, 3),
                        "predictions": predictions}
    return report


def print_report(report: dict, n: int) -> None:
    def pct(x):
        return "   –" if x is None else f"{100 * x:5.1f}"

    print(f"ProcessBench-format scoring of {n} solutions (accuracy on erroneous / correct solutions, F1; %)")
    print(f"{'locator':<22}{'erroneous':>10}{'correct':>9}{'F1':>7}{'seconds':>9}")
    for name, r in report.items():
        print(f"{name:<22}{pct(r['acc_erroneous']):>10}{pct(r['acc_correct']):>9}{pct(r['f1']):>7}{r['seconds']:>9.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/locate.py --processbench",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--processbench", required=True, metavar="FILE", help="ProcessBench-format JSONL")
    p.add_argument("--locators", default="trajectory,arithmetic",
                   help="text-only locators to score (a+b: one earliest-of link); judge and prm with --judge / --prm")
    p.add_argument("--judge", default=None, help="judges, as --lrp_judge (pretrained=PATH or model=NAME,base_url=URL; ';')")
    p.add_argument("--prm", default=None, help="a process reward model, as --lrp_prm (pretrained=PATH[,threshold=0.5,...])")
    p.add_argument("--device", default=None, help="device of local judges and the PRM (default: cuda if available)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--output", default=None, help="write the report (with every prediction) as JSON here")
    args, _ = p.parse_known_args(argv)
    try:
        rows = load(args.processbench)[: args.limit]
    except (OSError, ValueError) as err:
        print(f"processbench: {err}")
        return 2
    device = args.device
    if device is None and (args.judge or args.prm):
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    predictors = {name: predict_with(Chain.from_names(name)) for name in args.locators.split(",") if name}
    if args.judge:
        from lm_eval_lrp.lmeval.judge import make_judges

        predictors["judge"] = predict_with(Chain([make("judge", ask=make_judges(args.judge, device=device))]))
    if args.prm:
        from lm_eval_lrp.model_args import parse_model_args
        from lm_eval_lrp.locate.prm import load_prm

        prm, threshold = load_prm(parse_model_args(args.prm), device=device)
        predictors["prm"] = predict_with_prm(prm, threshold)
    report = score(rows, predictors)
    print_report(report, len(rows))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"file": args.processbench, "n": len(rows), "report": report}, indent=1))
    return 0
