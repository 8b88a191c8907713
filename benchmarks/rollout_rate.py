"""Rollout search per failure: every rollout the budget allows as one batch, against one position at a time.

A tiny random model (2-layer Llama, hidden 64, SmolLM2's tokenizer; tests/tiny_harness.py) writes its greedy output
after gsm8k-like prompts; the rollout locator then searches each output with the harness's budget
(``--lrp_rollouts 8``, ``--lrp_rollout_tokens 128``, 3 alternatives per position) and a scorer that accepts nothing
(the whole budget is spent: 8 rollouts at 3 positions) or, with ``--fix_at K``, the first change at output token K.
Forks are every position (``min_alternative`` ≈ 0: a random model's alternatives are all improbable). Both ways run
in interleaved rounds on the same failures, and each failure's records (rollouts, tokens, verdicts) must be equal.

    python benchmarks/rollout_rate.py                  # 6 failures, 3 rounds
    python benchmarks/rollout_rate.py --failures 10 --rounds 5 --fix_at 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import _common as common  # noqa: E402
from lm_eval_lrp.compare_stats import median_of  # noqa: E402

GOAL = 0.5
UNTIL = ("Question:", "</s>", "<|im_end|>")


class Scorer:
    def __init__(self, original: str, fix_at: int | None, offsets: list[int]):
        self.original, self.at = original, (offsets[fix_at] if fix_at is not None else None)

    def __call__(self, text: str) -> bool:
        k = next((j for j, (a, b) in enumerate(zip(text, self.original)) if a != b), None)
        return self.at is not None and k == self.at


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--failures", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rollouts", type=int, default=8, help="--lrp_rollouts (default 8)")
    ap.add_argument("--tokens", type=int, default=128, help="--lrp_rollout_tokens (default 128)")
    ap.add_argument("--output_tokens", type=int, default=48, help="length of each failure's output")
    ap.add_argument("--fix_at", type=int, default=None, help="the scorer accepts a first change at this token")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's own)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", help="a saved model folder (with its tokenizer) instead of the tiny random model")
    ap.add_argument("--out", default=str(common.ROOT / "runs" / "bench" / "rollout_rate.json"))
    args = ap.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import tiny_harness as th
    from lm_eval_lrp.locate import Budget, Context, Generation, NotFound
    from lm_eval_lrp.locate.decoding import greedy_fresh
    from lm_eval_lrp.locate.rollout import RolloutLocator

    if args.threads:
        torch.set_num_threads(args.threads)
    path = args.model or th.build(Path(tempfile.gettempdir()) / "lm_eval_lrp_bench_models")
    model = AutoModelForCausalLM.from_pretrained(path).to(args.device).eval()
    tok = AutoTokenizer.from_pretrained(path)
    budget = Budget(max_rollouts=args.rollouts, max_new_tokens=args.tokens)
    gens = []
    for k in range(args.failures):
        prompt = (f"Question: Janet has {3 + k} ducks that lay {16 + k} eggs a day. She eats {k + 2} and sells the rest "
                  f"for $2 each. How much does she make every day?\nAnswer:")
        ids = tok.encode(prompt)
        out = greedy_fresh(model, ids, args.output_tokens)
        gens.append(Generation(ids, out, tok.decode(out), until=UNTIL))

    def search(batched: bool) -> tuple[float, list]:
        answers = []
        for gen in gens:
            ctx = Context.from_tokenizer(tok, model, budget=budget)
            ctx = ctx.for_doc(Scorer(gen.output, args.fix_at, ctx.offsets(gen.output_ids)))
            ctx.scan(gen)  # the scan is shared by the chain's locators: not the rollouts' cost
            start = time.perf_counter()
            try:
                loc = RolloutLocator(min_alternative=1e-12, batched=batched).locate(gen, ctx)
                answers.append(("found", loc.index, loc.contrast, [dataclasses.asdict(r) for r in loc.rollouts]))
            except NotFound as err:
                answers.append(("not found", str(err), [dataclasses.asdict(r) for r in err.rollouts]))
            answers[-1] += (time.perf_counter() - start,)
        return sum(a[-1] for a in answers), answers

    search(True), search(False)  # warm-up
    times = {"batched": [], "one_position_at_a_time": []}
    for r in range(args.rounds):
        order = (True, False) if r % 2 == 0 else (False, True)
        got = {}
        for batched in order:
            seconds, answers = search(batched)
            times["batched" if batched else "one_position_at_a_time"].append(seconds)
            got[batched] = [a[:-1] for a in answers]
        if got[True] != got[False]:
            raise RuntimeError("batched rollouts differ from one position at a time")
        print(f"round {r + 1}: batched {times['batched'][-1]:.2f} s, one position at a time "
              f"{times['one_position_at_a_time'][-1]:.2f} s (records equal)", flush=True)
    n_roll = sum(len(a[-1]) for a in got[True])
    med_b, med_s = median_of(times["batched"]), median_of(times["one_position_at_a_time"])
    result = {"machine": common.machine(), "failures": len(gens), "rollouts": n_roll, "budget": dataclasses.asdict(budget),
              "fix_at": args.fix_at, "threads": torch.get_num_threads(), "times_s": times,
              "batched_s_per_failure": med_b / len(gens), "single_s_per_failure": med_s / len(gens),
              "ratio": med_b / med_s, "goal": GOAL}
    print(f"\nper failure: batched {result['batched_s_per_failure']:.3f} s, one position at a time "
          f"{result['single_s_per_failure']:.3f} s: ratio {result['ratio']:.2f} (goal ≤ {GOAL}; {n_roll} rollouts)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
