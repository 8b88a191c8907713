"""``lm-eval-lrp``: a drop-in for the ``lm_eval`` command, plus ``--lrp`` and a few ``--lrp_*`` options.

Every ``lm_eval`` argument is accepted unchanged. ``--lrp`` turns ``--model hf`` into ``hf-lrp`` and hands the
``--lrp_*`` options to it as ``lrp_*`` model arguments (lm-eval's own parser would reject unknown flags, so they
are taken out first). Without ``--lrp`` the command is exactly ``lm_eval``. Sub-commands of our own:
``lm-eval-lrp report RUN_DIR`` and ``lm-eval-lrp graph RECORD`` where installed.

Exit status (docs/exit-codes.md): 1 when lm-eval stopped before it produced results; 3 when lm-eval's results are
saved but the attribution failed (:mod:`lm_eval_lrp.outcome`; ``--lrp_allow_errors`` keeps 0).
"""

from __future__ import annotations

import argparse
import sys

HF_NAMES = ("hf", "hf-auto", "huggingface", "hf-lrp")
SUBCOMMANDS = ("report", "graph", "compare", "explain")


class Refused(SystemExit):
    """A run refused before anything is evaluated: exit code 2, the message (one line naming the fix) on stderr."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
        self.code = 2

    def __str__(self) -> str:
        return self.message


def lrp_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-eval-lrp",
        add_help=False,
        allow_abbrev=False,
        description="lm-eval-lrp: the lm_eval command, plus contrastive LRP explanations of every wrong prediction. "
        "All lm_eval options (listed after this section) are accepted unchanged.",
        epilog="sub-commands (each with its own --help): "
        "lm-eval-lrp report RUN_DIR (HTML report and summary of a run); "
        "lm-eval-lrp compare RUN_A RUN_B ... (re-explain A's failures on other models or checkpoints); "
        "lm-eval-lrp graph RECORDS.jsonl --doc_id N (the attribution graph of one stored record); "
        "lm-eval-lrp explain RUN_DIR --cases FILE (re-explain stored failures at hand-given positions)",
    )
    g = p.add_argument_group("attribution (lm-eval-lrp)")
    g.add_argument("--lrp", action="store_true", help="explain each wrong prediction (turns --model hf into hf-lrp)")
    g.add_argument("--lrp_rule", choices=("attnlrp", "cp"), help="LRP variant: attnlrp (default) or cp (CP-LRP)")
    g.add_argument("--lrp_min_delta", type=float, help="clean-case filter: skip cases with Δℓ ≤ this (default 1.0)")
    g.add_argument("--lrp_max_failures", type=int, help="attribute at most this many failures per task")
    g.add_argument("--lrp_topk", type=int, help="top-k alternative tokens recorded (default 5)")
    g.add_argument("--lrp_nodes", choices=("true", "false"), help="write per-layer node relevance (default true)")
    g.add_argument("--lrp_sequence", action="store_true", help="also the sequence-level contrast (multiple choice)")
    g.add_argument("--lrp_metric", help="the task metric that decides 'wrong' (default: the task's first)")
    g.add_argument("--lrp_filter", help="the filter whose answers are judged (default: the task's first)")
    g.add_argument("--lrp_hooks_path", help="folder of your own task hooks (*.py defining HOOK)")
    g.add_argument("--lrp_max_length", type=int, help="left-truncate attributed contexts to this many tokens")
    g.add_argument("--lrp_graph", nargs="?", const="all", metavar="N",
                   help="attribution graphs for all attributed failures, or the top N by Δℓ per task")
    g.add_argument("--lrp_graph_prune", metavar="SPEC", help="graph pruning: mass:0.85 (default) or threshold:0.01")
    g.add_argument("--lrp_faithfulness", action="store_true",
                   help="deletion curves per record: AttnLRP vs gradient×input, CP-LRP and random")
    g.add_argument("--lrp_locate", metavar="NAME[,NAME...]",
                   help="generate_until: locator chain, first that succeeds wins; a+b: both run, the earliest token wins "
                   "(gold, verifier, arithmetic, instructions, code, crash, trajectory, hindsight, rollout, reference, "
                   "judge, prm, cases; default: per kind of task)")
    g.add_argument("--lrp_rollouts", type=int, metavar="N", help="rollout locator: at most N forced alternatives per failure (default 8)")
    g.add_argument("--lrp_rollout_tokens", type=int, metavar="N", help="rollout locator: at most N new tokens per rollout (default 128)")
    g.add_argument("--lrp_reference_model", metavar="ARGS",
                   help="reference locator: a second model, like --model_args (pretrained=...,gguf_file=...; same "
                   "tokenizer), optionally gap=NATS (5) and gold_in_context=false; joins the default chains")
    g.add_argument("--lrp_judge", metavar="ARGS[;ARGS...]",
                   help="judge locator: a local transformers chat model (pretrained=PATH) or an OpenAI-compatible chat "
                   "server through lm-eval's local-chat-completions (model=NAME,base_url=http://HOST:PORT/v1/chat/"
                   "completions); several separated by ';' vote; asked first in the default chains; each server is "
                   "reached once before evaluating")
    g.add_argument("--lrp_prm", metavar="ARGS",
                   help="prm locator: a process reward model through transformers (pretrained=PATH, optionally "
                   "trust_remote_code=true, threshold=0.5, step_token=<extra_0>, batch_size=8); joins the math chain")
    g.add_argument("--lrp_cases", metavar="FILE", help="cases locator: JSONL of hand annotations (task, doc_id, offset...)")
    g.add_argument("--lrp_batch_size", metavar="N|auto", help="multiple-choice failures per forward/backward (default 1)")
    g.add_argument("--lrp_allow_errors", action="store_true",
                   help="exit status 0 even when the attribution failed (default: exit status 3 after lm-eval's "
                   "results are saved; see docs/exit-codes.md)")
    return p


def _find(rest: list[str], *names: str) -> tuple[int, str | None]:
    for i, arg in enumerate(rest):
        for name in names:
            if arg == name and i + 1 < len(rest):
                return i, rest[i + 1]
            if arg.startswith(name + "="):
                return i, arg.split("=", 1)[1]
    return -1, None


def translate(argv: list[str]) -> list[str]:
    """lm_eval arguments for ``argv``: our options removed and, with ``--lrp``, turned into model arguments."""
    ns, rest = lrp_parser().parse_known_args(argv)
    unknown = [a for a in rest if a.startswith("--lrp")]
    if unknown:
        names = sorted(a.option_strings[0] for a in lrp_parser()._actions if a.option_strings)
        raise Refused(f"lm-eval-lrp: unknown option {unknown[0].split('=')[0]}; the attribution options are: {', '.join(names)}")
    given = {k: v for k, v in vars(ns).items() if k != "lrp" and v is not None and v is not False}
    if ns.lrp:
        from .config import LRPConfig

        try:  # every value that can be checked before the evaluation starts
            LRPConfig.pop_from(dict(given))
        except (ValueError, TypeError) as err:
            raise Refused(f"lm-eval-lrp: {err}") from None
    if not ns.lrp:
        if given:
            print(f"lm-eval-lrp: {', '.join('--' + k for k in given)} ignored without --lrp", file=sys.stderr)
        return rest
    i, model = _find(rest, "--model")
    if model is None:
        rest = rest + ["--model", "hf-lrp"]
    elif model not in HF_NAMES:
        raise Refused(f"lm-eval-lrp: --lrp explains Hugging Face models: use --model hf (got --model {model})")
    else:
        rest = list(rest)
        if rest[i] == "--model":
            rest[i + 1] = "hf-lrp"
        else:
            rest[i] = "--model=hf-lrp"
    _, output = _find(rest, "--output_path", "-o")
    # lm-eval splits --model_args at commas: a locator chain and a reference model's or judge's own arguments
    # travel joined by '|'
    model_args = [f"{k}={str(v).replace(',', '|') if k in ('lrp_locate', 'lrp_reference_model', 'lrp_judge', 'lrp_prm') else v}"
                  for k, v in given.items()]
    if output:
        model_args.append(f"lrp_output_path={output}")
    if model_args:
        rest = rest + ["--model_args", *model_args]
    return rest


def preflight(argv: list[str]) -> None:
    """The checks before evaluating (:mod:`lm_eval_lrp.preflight`) of an ``--lrp`` command line; raises
    :class:`Refused`."""
    from .config import LRPConfig
    from .model_args import ModelArgsError, parse_model_args
    from .preflight import Refusal, check_run

    ns, rest = lrp_parser().parse_known_args(argv)
    if not ns.lrp:
        return
    given = {k: v for k, v in vars(ns).items() if k != "lrp" and v is not None and v is not False}
    cfg = LRPConfig.pop_from(given)
    _, tasks = _find(rest, "--tasks", "-t")
    _, output = _find(rest, "--output_path", "-o")
    _, model_args = _find(rest, "--model_args", "-a")
    try:
        args = parse_model_args(model_args) if model_args and not model_args.lstrip().startswith("{") else {}
    except ModelArgsError:
        args = {}  # lm-eval reports malformed model arguments itself
    try:
        check_run(cfg, [t.strip() for t in (tasks or "").split(",") if t.strip()], output, args)
    except Refusal as err:
        raise Refused(f"lm-eval-lrp: {err}") from None


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _main(argv)
    except Refused as refusal:
        print(refusal.message, file=sys.stderr)
        raise SystemExit(refusal.code) from None


def _main(argv: list[str]) -> None:
    if argv and argv[0] in SUBCOMMANDS:
        from importlib import import_module

        try:
            command = import_module(f"lm_eval_lrp.commands.{argv[0]}")
        except ModuleNotFoundError:
            raise SystemExit(f"lm-eval-lrp {argv[0]}: not available in this version") from None
        raise SystemExit(command.main(argv[1:]))
    if "-h" in argv or "--help" in argv:
        lrp_parser().print_help()
        print("\n" + "=" * 30 + " lm_eval options " + "=" * 30 + "\n")
        argv = ["run", "--help"]
    elif argv and not argv[0].startswith("-") and argv[0] not in ("run", "ls", "validate"):  # lm-eval's own
        raise Refused(f"lm-eval-lrp: unknown sub-command {argv[0]!r}; ours are: "
                      + ", ".join(f"lm-eval-lrp {c}" for c in SUBCOMMANDS)
                      + " (each with --help), and lm-eval's run, ls, validate; an evaluation is "
                      "lm-eval-lrp --model hf ... --lrp")
    else:
        translated = translate(argv)
        preflight(argv)
        argv = translated

    from .lmeval import run_cli  # registers hf-lrp and routes evaluations through the attribution loop
    from .lmeval.route import LRPOptionError
    from .outcome import exit_code

    try:
        outcomes = run_cli(argv)
    except LRPOptionError as err:
        raise Refused(f"lm-eval-lrp: {err}") from None
    except Exception as err:  # noqa: BLE001 - say clearly that lm-eval stopped, then fail as lm_eval would
        import traceback

        traceback.print_exc()
        print(f"\nlm-eval-lrp: the evaluation stopped before it produced results: {type(err).__name__}: {err}"
              f"{_hint(err)}", file=sys.stderr)
        raise SystemExit(1) from None
    code, lines = exit_code(outcomes)
    for line in lines:
        print(line, file=sys.stderr)
    if code:
        raise SystemExit(code)


def _hint(err: Exception) -> str:
    text = str(err)
    if "did not find any docs" in text:
        return " (the task has no documents: an empty dataset, or --limit 0; nothing to evaluate or attribute)"
    if isinstance(err, StopIteration) or "StopIteration" in type(err).__name__:
        return " (the dataset could not be read: is its data file empty?)"
    if isinstance(err, (FileNotFoundError, PermissionError)):
        return " (check the paths given to --model_args, --include_path and --output_path)"
    return ""


if __name__ == "__main__":
    main()
