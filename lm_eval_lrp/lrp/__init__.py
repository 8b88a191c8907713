"""The attribution engine: contrastive AttnLRP / CP-LRP on Hugging Face causal LMs. Never imports lm-eval."""

from .arch import Architecture, UnsupportedArchitecture, architecture_of, supported_model_types
from .batched import ExplainError, explain_batch, explain_many
from .composite import Composite, attnlrp, cp_lrp, lrp_rules
from .baselines import gradient_x_input
from .explain import Explanation, LRPForward, explain
from .selfcheck import SelfCheckFailed, self_check
from .sequences import ContextPairExplanation, SequenceExplanation, explain_context_pair, explain_sequences
from .target import Contrast

__all__ = [
    "Architecture",
    "Composite",
    "ContextPairExplanation",
    "Contrast",
    "ExplainError",
    "Explanation",
    "LRPForward",
    "SelfCheckFailed",
    "SequenceExplanation",
    "UnsupportedArchitecture",
    "architecture_of",
    "attnlrp",
    "cp_lrp",
    "explain",
    "explain_context_pair",
    "explain_batch",
    "explain_many",
    "explain_sequences",
    "gradient_x_input",
    "lrp_rules",
    "self_check",
    "supported_model_types",
]
