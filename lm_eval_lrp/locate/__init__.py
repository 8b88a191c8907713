"""Which token of a failed generation to explain: locators and the chain that runs them (no lm-eval inside).

>>> from lm_eval_lrp.locate import Chain, Context, Generation
>>> ctx = Context.from_tokenizer(tokenizer, model).for_doc(score=lambda text: is_correct(text))
>>> result = Chain.from_names("rollout,verifier,gold").locate(Generation(prompt_ids, output_ids, output), ctx)
>>> contrast = result.location.to_contrast(gen)   # what the LRP engine explains
"""

from ..task_kinds import kind_of_doc, kind_of_task
from .chain import (DEFAULT_CHAINS, WITH_REFERENCE, Attempt, Chain, ChainResult, Earliest, Locator, make,
                    names, needs_of, options_from_needs, register, unregister)
from .context import Budget, Context, Scan, scan
from .types import Candidate, Generation, LocateError, Location, NotFound, Rollout

__all__ = [
    "Attempt", "Budget", "Candidate", "Chain", "ChainResult", "Context", "DEFAULT_CHAINS", "Earliest", "Generation",
    "LocateError", "Location", "Locator", "NotFound", "Rollout", "Scan", "WITH_REFERENCE", "kind_of_doc", "kind_of_task", "make", "names", "needs_of",
    "options_from_needs", "register", "scan", "unregister",
]
