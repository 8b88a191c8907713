"""lm-eval-lrp: explain the failures of the model under evaluation with contrastive AttnLRP."""

__version__ = "0.1.0"

from .lrp import attnlrp, cp_lrp, explain, explain_sequences  # noqa: E402

__all__ = ["attnlrp", "cp_lrp", "explain", "explain_sequences", "__version__"]
