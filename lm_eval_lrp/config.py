"""The attribution settings: the ``lrp_*`` model arguments (``--lrp_<name>`` on the command line). Plain values."""

from __future__ import annotations

from dataclasses import dataclass, fields


_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _coerce(name: str, value):
    """Model arguments given as strings (a dict from Python, or a results JSON) in the type of the field."""
    kind = {f.name: str(f.type) for f in fields(LRPConfig)}.get(name, "")
    if not isinstance(value, str) or (name == "batch_size" and value == "auto"):
        return value
    if name == "locate":  # lm-eval splits --model_args at commas: the CLI sends the chain joined by '|'
        return value.replace("|", ",")
    if kind.startswith("bool") and value.lower() in _BOOLS:
        return _BOOLS[value.lower()]
    try:
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("float"):
            return float(value)
    except ValueError:
        raise ValueError(f"lrp_{name}={value!r}: expected a number") from None
    return value


#: how to give what a locator declares it needs (lm_eval_lrp.locate.chain.NEEDS; the model, budget and hook always are)
GIVE = {"cases": "give the annotations file with --lrp_cases FILE",
        "reference": "give the model with --lrp_reference_model pretrained=...",
        "judge": "give the judges with --lrp_judge pretrained=PATH or model=NAME,base_url=URL",
        "prm": "give the process reward model with --lrp_prm pretrained=PATH"}


@dataclass
class LRPConfig:
    """The ``lrp_*`` model arguments (``--lrp_<name>`` on the command line)."""

    rule: str = "attnlrp"  # attnlrp | cp
    min_delta: float = 1.0  # the paper's clean-case filter: Δℓ ≤ min_delta is recorded as skipped
    max_failures: int | None = None  # per task; None = all
    topk: int = 5
    nodes: bool = True  # per-layer node relevance (sidecar files)
    sequence: bool = False  # also the sequence-level contrast for multiple-choice failures
    metric: str | None = None  # which of the task's metrics decides "wrong" (default: the task's first)
    filter: str | None = None  # which filter's answers are judged (default: the task's first)
    hooks_path: str | None = None  # folder of user task hooks
    output_path: str | None = None  # lm-eval's --output_path (set by the CLI)
    max_length: int | None = None  # context cap for attribution (default: the model's max_length)
    graph: str | int | bool | None = None  # attribution graphs: "all" (or true) / N = the top N by Δℓ per task
    graph_prune: str = "mass:0.85"  # "mass:p" (cumulative mass per transition) or "threshold:τ"
    faithfulness: bool = False  # deletion curves vs gradient×input, CP-LRP and random per record
    locate: str | None = None  # generate_until: locator chain "name[,name...]" (default: per kind of task)
    rollouts: int = 8  # rollout locator: forced alternatives continued per failure, at most
    rollout_tokens: int = 128  # rollout locator: new tokens per rollout, at most
    reference_model: str | None = None  # reference locator: a second model's args ("pretrained=...,gguf_file=...")
    cases: str | None = None  # cases locator: JSONL of hand annotations
    judge: str | None = None  # judge locator: "model=NAME,base_url=URL[;...]" (lm-eval's local-chat-completions)
    #                           or "pretrained=PATH" (a local transformers chat model)
    prm: str | None = None  # prm locator: "pretrained=PATH[,threshold=0.5,step_token=<extra_0>,trust_remote_code=true]"
    batch_size: int | str = 1  # multiple-choice failures explained per forward/backward ("auto": from free memory)
    allow_errors: bool = False  # exit status 0 even when the attribution failed (see lm_eval_lrp.outcome)

    @classmethod
    def pop_from(cls, kwargs: dict) -> "LRPConfig":
        names = {f.name for f in fields(cls)}
        found = {}
        for key in [k for k in kwargs if k.startswith("lrp_")]:
            name = key[len("lrp_") :]
            if name not in names:
                raise ValueError(
                    f"unknown model argument {key!r}; the lrp_* arguments are: "
                    + ", ".join(f"lrp_{n}" for n in sorted(names))
                )
            found[name] = _coerce(name, kwargs.pop(key))
        cfg = cls(**found)
        if cfg.rule not in ("attnlrp", "cp"):
            raise ValueError(f"lrp_rule={cfg.rule!r}: choose attnlrp or cp")
        if cfg.graph is True or (isinstance(cfg.graph, str) and cfg.graph.lower() in ("all", "true")):
            cfg.graph = "all"
        elif cfg.graph in (False, 0) or (isinstance(cfg.graph, str) and cfg.graph.lower() in ("false", "none", "")):
            cfg.graph = None
        elif isinstance(cfg.graph, str) and cfg.graph.strip().isdigit():
            cfg.graph = int(cfg.graph)
        elif not isinstance(cfg.graph, int) and cfg.graph is not None:
            raise ValueError(f"lrp_graph={cfg.graph!r}: use 'all' or a number N (the top N failures by Δℓ)")
        cfg.check()
        return cfg

    def check(self) -> None:
        """Values that can be checked before the evaluation starts (metric and filter names need the tasks)."""
        from .graph.prune import parse_prune

        try:
            parse_prune(self.graph_prune)
        except ValueError as err:
            raise ValueError(f"lrp_graph_prune={self.graph_prune!r}: {err}") from None
        if self.locate:
            from .locate import names, needs_of
            from .locate.chain import split_names

            named = [n for link in split_names(str(self.locate)) for n in link]
            if self.hooks_path and any(n not in names() for n in named):
                from .preflight import check_hooks

                check_hooks(self.hooks_path)  # the user's hook files load first: one may register a locator
            unknown = [n for n in named if n not in names()]
            if unknown:
                raise ValueError(f"lrp_locate: unknown locator {unknown[0]!r}; available: {', '.join(names())}")
            given = {"cases": self.cases, "reference": self.reference_model, "judge": self.judge, "prm": self.prm}
            for name in named:
                missing = [need for need in needs_of(name) if need in given and not given[need]]
                if missing:
                    raise ValueError(f"lrp_locate names {name!r}: {GIVE[missing[0]]}")
        if self.reference_model:
            from .model_args import LOAD_KEYS, load_spec, parse_model_args
            from .reference_model import split_reference_args

            load_args, _ = split_reference_args(parse_model_args(str(self.reference_model).replace("|", ",")), LOAD_KEYS)
            load_spec(load_args)  # no pretrained= is named now, before the evaluation
        if self.judge:
            from .locate.judge import parse_judges

            parse_judges(self.judge)  # a malformed judge is named now, before the evaluation
        if self.prm:
            from .model_args import parse_model_args
            from .locate.prm import split_prm_args

            load, options = split_prm_args(parse_model_args(str(self.prm).replace("|", ",")))
            if not load.get("pretrained"):
                raise ValueError("lrp_prm: give the process reward model as pretrained=PATH")
            if not 0.0 < float(options.get("threshold", 0.5)) < 1.0:
                raise ValueError(f"lrp_prm: threshold={options['threshold']} must lie between 0 and 1")
        if self.cases:
            from .preflight import check_cases

            check_cases(self.cases)  # a missing file or a malformed line is named now, before the evaluation
        if not (self.batch_size == "auto" or (isinstance(self.batch_size, int) and self.batch_size >= 1)):
            raise ValueError(f"lrp_batch_size={self.batch_size!r}: a positive integer or 'auto'")
        for name in ("max_failures", "topk", "max_length", "rollouts", "rollout_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) < (0 if name in ("max_failures", "rollouts") else 1)):
                raise ValueError(f"lrp_{name}={value!r}: must be a {'non-negative' if name in ('max_failures', 'rollouts') else 'positive'} integer")

    def graph_count(self, n_attributed: int) -> int:
        if self.graph is None:
            return 0
        return n_attributed if self.graph == "all" else min(int(self.graph), n_attributed)
