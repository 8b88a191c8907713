"""lm-eval-lrp: explain the failures of the model under evaluation with contrastive AttnLRP.

Importing the package registers the ``hf-lrp`` model with lm-eval and wraps lm-eval's ``evaluate`` (transparent
for every other model), so ``lm_eval.simple_evaluate(model="hf-lrp", ...)`` attributes failures too.
"""

__version__ = "0.1.0"

from .artifacts import load_run  # noqa: E402
from .lrp import attnlrp, cp_lrp, explain, explain_sequences  # noqa: E402
from .model import HFLRP, LRPConfig  # noqa: E402
from . import harness as _harness  # noqa: E402

_harness.install()

__all__ = ["HFLRP", "LRPConfig", "attnlrp", "cp_lrp", "explain", "explain_sequences", "load_run", "__version__"]
