"""``hf-lrp``: lm-eval's HF model plus the attribution settings. Evaluation itself is the parent's, unchanged.

Every ``--model_args`` of ``hf`` works; the ``lrp_*`` ones are taken out before the parent's constructor (HFLM
would pass unknown arguments on to ``from_pretrained``). The attribution runs after lm-eval has judged the
documents (see :mod:`lm_eval_lrp.harness`), on this same model object.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import logging

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from .lrp import UnsupportedArchitecture, architecture_of

log = logging.getLogger("lm_eval_lrp")


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
            found[name] = kwargs.pop(key)
        cfg = cls(**found)
        if cfg.rule not in ("attnlrp", "cp"):
            raise ValueError(f"lrp_rule={cfg.rule!r}: choose attnlrp or cp")
        if cfg.graph is True or (isinstance(cfg.graph, str) and cfg.graph.lower() in ("all", "true")):
            cfg.graph = "all"
        elif cfg.graph in (False, 0) or (isinstance(cfg.graph, str) and cfg.graph.lower() in ("false", "none", "")):
            cfg.graph = None
        elif not isinstance(cfg.graph, int) and cfg.graph is not None:
            raise ValueError(f"lrp_graph={cfg.graph!r}: use 'all' or a number N (the top N failures by Δℓ)")
        return cfg

    def graph_count(self, n_attributed: int) -> int:
        if self.graph is None:
            return 0
        return n_attributed if self.graph == "all" else min(int(self.graph), n_attributed)


@register_model("hf-lrp")
class HFLRP(HFLM):
    """lm-eval's HF model whose failures are explained with contrastive LRP after evaluation."""

    def __init__(self, *args, **kwargs):
        self.lrp = LRPConfig.pop_from(kwargs)
        # what lm-eval's tracker names the output folder after (see GeneralConfigTracker._get_model_name)
        self.lrp_name_args = {k: kwargs[k] for k in ("peft", "delta", "pretrained") if isinstance(kwargs.get(k), str)}
        super().__init__(*args, **kwargs)
        self._data_parallel_on_cpu()
        self.lrp_unsupported: str | None = None
        try:
            architecture_of(self.model)
        except UnsupportedArchitecture as err:
            # Decision: evaluate anyway (the results are never lost), attribute nothing, and say so loudly.
            self.lrp_unsupported = str(err)
            log.warning("lm-eval-lrp: %s The evaluation runs without attribution.", err)

    def _data_parallel_on_cpu(self) -> None:
        """Under ``accelerate launch --cpu --num_processes N``, split the documents like lm-eval does on GPUs.

        lm-eval's HFLM enables data parallelism only when it counts GPUs; on CPU every process would evaluate every
        document. The accelerator (gloo process group) is already there, so use it: each rank evaluates and
        attributes its own documents, lm-eval gathers the metrics, and rank 0 merges the attribution shards.
        """
        accelerator = getattr(self, "accelerator", None)
        if accelerator is None or self.world_size > 1 or accelerator.num_processes <= 1:
            return
        if accelerator.device.type != "cpu" or getattr(self.model, "hf_device_map", None):
            return
        self._rank = accelerator.process_index
        self._world_size = accelerator.num_processes

    def get_model_info(self) -> dict:
        info = super().get_model_info()
        info["lrp"] = {k: v for k, v in asdict(self.lrp).items() if v is not None}
        return info
