"""``hf-lrp``: lm-eval's HF model plus the attribution settings. Evaluation itself is the parent's, unchanged.

Every ``--model_args`` of ``hf`` works; the ``lrp_*`` ones are taken out before the parent's constructor (HFLM
would pass unknown arguments on to ``from_pretrained``). The attribution runs after lm-eval has judged the
documents, on this same model object, through :meth:`HFLRP.subject` (plain values for the harness loop).
"""

from __future__ import annotations

import hashlib
import logging
from array import array
from dataclasses import asdict

from lm_eval.models.huggingface import HFLM

from ..config import LRPConfig
from ..harness.subject import Subject
from ..lrp.arch import UnsupportedArchitecture
from ..lrp.selfcheck import self_check
from . import parallel
from .encodings import PairEncodings

log = logging.getLogger("lm_eval_lrp")


class HFLRP(HFLM):
    """lm-eval's HF model whose failures are explained with contrastive LRP after evaluation."""

    def __init__(self, *args, **kwargs):
        self.lrp = LRPConfig.pop_from(kwargs)
        self.lrp_encodings = PairEncodings()  # the ids of lm-eval's loglikelihood requests, for their failures
        # what lm-eval's tracker names the output folder after (see GeneralConfigTracker._get_model_name)
        self.lrp_name_args = {k: kwargs[k] for k in ("peft", "delta", "pretrained") if isinstance(kwargs.get(k), str)}
        super().__init__(*args, **kwargs)
        self._data_parallel_on_cpu()
        self.lrp_reference, self.lrp_reference_options = None, {}
        if self.lrp.reference_model:
            self.lrp_reference, self.lrp_reference_options = self._load_reference()
        self.lrp_judge = None
        if self.lrp.judge:
            from .judge import make_judges

            self.lrp_judge = make_judges(self.lrp.judge, device=str(self.model.device),
                                         dtype=str(self.model.dtype).replace("torch.", ""))
        self.lrp_prm = None
        if self.lrp.prm:
            from ..model_args import parse_model_args
            from ..locate.prm import load_prm

            self.lrp_prm = load_prm(parse_model_args(str(self.lrp.prm).replace("|", ",")), device=str(self.model.device),
                                    dtype=str(self.model.dtype).replace("torch.", ""))
        self.lrp_unsupported: str | None = None
        self.lrp_self_check: dict | None = None
        self.lrp_generated: dict[bytes, array] = {}  # digest of the unpadded prompt ids -> the ids generated after them
        try:  # coverage of every block's modules + CP-LRP conservation and an unchanged forward on a short probe
            self.lrp_self_check = self_check(self.model)
        except UnsupportedArchitecture as err:
            # Decision: evaluate anyway (the results are never lost), attribute nothing, and say so loudly.
            self.lrp_unsupported = str(err)
            self.lrp_self_check = getattr(err, "figures", None)
            log.warning("lm-eval-lrp: %s The evaluation runs without attribution.", err)

    def _data_parallel_on_cpu(self) -> None:
        """Under torchrun on CPU, split the documents like lm-eval does on GPUs.

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

    def _load_reference(self):
        """The reference locator's model and options, loaded once before the evaluation; another tokenizer is
        refused here."""
        from ..loading import load_model, load_tokenizer
        from ..model_args import LOAD_KEYS, load_spec, parse_model_args
        from ..reference_model import check_same_tokenizer, split_reference_args

        args, options = split_reference_args(parse_model_args(str(self.lrp.reference_model).replace("|", ",")), LOAD_KEYS)
        spec = load_spec(args)
        check_same_tokenizer(load_tokenizer(spec), self.tokenizer)
        dtype = str(self.model.dtype).replace("torch.", "")
        return load_model(spec, device=str(self.model.device), dtype=dtype), options

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        """The parent's generation, unchanged; the new token ids of each row are kept (keyed by the row's unpadded
        prompt ids) so that a failure is explained on exactly the tokens the model generated, not a re-encoding."""
        cont = super()._model_generate(context, max_length, stop, **generation_kwargs)
        mask = generation_kwargs.get("attention_mask")
        width = context.shape[1]
        for row in range(context.shape[0]):
            ids = context[row][mask[row].bool()] if mask is not None else context[row]
            self.lrp_generated[_digest(ids.tolist())] = array("q", cont[row, width:].tolist())
        return cont

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """The parent's encoding, unchanged; kept, so that a failure's choices are not tokenised again."""
        pair = super()._encode_pair(context, continuation)
        self.lrp_encodings.keep(context, continuation, pair)
        return pair

    def _lrp_encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """For the harness: the ids lm-eval scored this pair with, or (a pair it did not encode) the parent's."""
        found = self.lrp_encodings.get(context, continuation)
        return found if found is not None else super()._encode_pair(context, continuation)

    def get_model_info(self) -> dict:
        info = super().get_model_info()
        info["lrp"] = {k: v for k, v in asdict(self.lrp).items() if v is not None}
        return info

    def _generation_context(self, context: str, max_gen_toks: int | None = None) -> list[int]:
        """The ids lm-eval's ``generate_until`` builds for ``context`` (left-truncated to leave max_gen_toks)."""
        max_ctx = self.max_length - (max_gen_toks or self.max_gen_toks)
        ids, _ = self.tok_batch_encode([context], left_truncate_len=max_ctx, truncation=self.truncation)
        return ids[0].tolist()

    def subject(self) -> Subject:
        rank, world = self.rank, self.world_size
        return Subject(
            model=self.model,
            tokenizer=self.tokenizer,
            config=self.lrp,
            encode_pair=self._lrp_encode_pair,
            generation_context=self._generation_context,
            max_gen_toks=self.max_gen_toks,
            generated=lambda prompt_ids: self.lrp_generated.get(_digest(prompt_ids)),
            max_length=self.lrp.max_length or self.max_length,
            source={"model": self.lrp_name_args, "revision": getattr(self, "revision", None), "dtype": str(self.model.dtype)},
            rank=rank,
            world=world,
            broadcast=lambda obj: parallel.broadcast(obj, world),
            gather=lambda obj: parallel.gather(obj, rank, world),
            barrier=lambda: parallel.barrier(world),
            unsupported=self.lrp_unsupported,
            reference=self.lrp_reference,
            reference_options=self.lrp_reference_options,
            judge=self.lrp_judge,
            prm=self.lrp_prm,
            self_check=self.lrp_self_check,
        )


def _digest(ids) -> bytes:
    """A compact key for a prompt's token ids (a long few-shot prompt is not kept per document)."""
    return hashlib.blake2b(array("q", [int(i) for i in ids]).tobytes(), digest_size=16).digest()
