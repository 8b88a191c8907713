"""lm-eval-lrp: explain the failures of the model under evaluation with contrastive AttnLRP.

Importing this package does not import lm-eval. To use ``hf-lrp`` from Python, call :func:`install` once: it
registers the model with lm-eval and routes its evaluations through the attribution loop (the ``lm-eval-lrp``
command does this itself)::

    import lm_eval, lm_eval_lrp
    lm_eval_lrp.install()
    lm_eval.simple_evaluate(model="hf-lrp", model_args={...}, tasks=[...])
"""

__version__ = "0.1.0"

from .artifacts import load_run  # noqa: E402
from .config import LRPConfig  # noqa: E402
from .lrp import Contrast, attnlrp, cp_lrp, explain, explain_sequences  # noqa: E402
from .record import Record  # noqa: E402


def install() -> None:
    """Register ``hf-lrp`` with lm-eval and wrap its ``evaluate`` (see :mod:`lm_eval_lrp.lmeval`). Idempotent."""
    from .lmeval import install as _install

    _install()


def __getattr__(name: str):
    if name == "HFLRP":  # lm-eval's model class: importing it imports lm-eval
        install()
        from .lmeval.model import HFLRP

        return HFLRP
    raise AttributeError(f"module 'lm_eval_lrp' has no attribute {name!r}")


__all__ = ["Contrast", "HFLRP", "LRPConfig", "Record", "attnlrp", "cp_lrp", "explain", "explain_sequences", "install",
           "load_run", "__version__"]
