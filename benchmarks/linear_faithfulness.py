"""Faithfulness of the linear-attention and state-space rules (docs/architectures-linear.md) on random weights.

No trained checkpoint of these families can be made or downloaded here, so this runs on the tiny seeded random
models of tests/arch_zoo.py (transformers' own config classes): per family, ``--cases`` random 24-token sequences;
target = the top-1 next token, contrast = a random other token of the top 10 (Δℓ > 0). For each case
``lm_eval_lrp.faithfulness.faithfulness`` gives deletion curves (the k = 0, 1, 2, 4, ... most relevant tokens
replaced by the pad token) and their areas (mean Δℓ(k)/Δℓ(0); smaller = better) for AttnLRP, CP-LRP, gradient ×
input and a random order. Reported per family: median areas and the share of cases where AttnLRP's area is smaller
than gradient × input's and than random's. Llama is included as the softmax-attention reference.

    python benchmarks/linear_faithfulness.py              # 20 cases per family
    python benchmarks/linear_faithfulness.py --cases 50 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from arch_zoo import tiny  # noqa: E402

from lm_eval_lrp.faithfulness import faithfulness  # noqa: E402
from lm_eval_lrp.lrp import explain  # noqa: E402

FAMILIES = ("llama", "qwen3_next", "qwen3_5_text", "qwen3_5_moe_text", "mamba2", "bamba", "granitemoehybrid",
            "mamba", "falcon_mamba", "jamba", "lfm2", "lfm2_moe", "nemotron_h")
METHODS = ("attnlrp", "cp", "grad_x_input", "random")


def case(model, gen: torch.Generator, T: int) -> tuple[torch.Tensor, int, int]:
    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab, (T,), generator=gen)
    with torch.no_grad():
        logits = model(ids.unsqueeze(0)).logits[0, -1]
    top = logits.topk(10).indices.tolist()
    target = top[0]
    contrast = top[1 + int(torch.randint(0, 9, (1,), generator=gen))]
    return ids, target, contrast


def run_family(family: str, cases: int, T: int) -> dict:
    model = tiny(family)
    gen = torch.Generator().manual_seed(1234)
    areas = {m: [] for m in METHODS}
    beats = {"grad_x_input": [], "random": [], "cp": []}
    start = time.perf_counter()
    for i in range(cases):
        ids, target, contrast = case(model, gen, T)
        rel = explain(model, ids, -1, target, contrast, rule="attnlrp", nodes=False, topk=1).input_relevance
        f = faithfulness(model, ids, T - 1, target, contrast, rel, seed=i, method="replace", rule="attnlrp",
                         flips=False)
        if any(f["area"][m] is None for m in METHODS):
            continue
        for m in METHODS:
            areas[m].append(f["area"][m])
        for x in beats:
            beats[x].append(f["attnlrp_beats"][x])
    n = len(areas["attnlrp"])
    return {
        "family": family,
        "n": n,
        "median_area": {m: statistics.median(v) for m, v in areas.items()} if n else {},
        "attnlrp_beats": {x: sum(v) / n for x, v in beats.items()} if n else {},
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print("| family | n | AttnLRP | CP-LRP | grad×input | random | AttnLRP < grad×input | AttnLRP < random |")
    print("|---|---|---|---|---|---|---|---|")
    for family in args.families:
        r = run_family(family, args.cases, args.tokens)
        rows.append(r)
        a, b = r["median_area"], r["attnlrp_beats"]
        print(f"| {family} | {r['n']} | {a['attnlrp']:.3f} | {a['cp']:.3f} | {a['grad_x_input']:.3f} | "
              f"{a['random']:.3f} | {b['grad_x_input']:.0%} | {b['random']:.0%} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
