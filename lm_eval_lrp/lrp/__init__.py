"""The attribution engine: contrastive AttnLRP / CP-LRP on Hugging Face causal LMs. Never imports lm-eval."""

from .arch import Architecture, UnsupportedArchitecture, architecture_of, supported_model_types
from .batched import ExplainError, explain_batch, explain_many
from .composite import Composite, attnlrp, cp_lrp, lrp_rules
from .explain import Explanation, LRPForward, SequenceExplanation, explain, explain_sequences, gradient_x_input

__all__ = [
    "Architecture",
    "Composite",
    "ExplainError",
    "Explanation",
    "LRPForward",
    "SequenceExplanation",
    "UnsupportedArchitecture",
    "architecture_of",
    "attnlrp",
    "cp_lrp",
    "explain",
    "explain_batch",
    "explain_many",
    "explain_sequences",
    "gradient_x_input",
    "lrp_rules",
    "supported_model_types",
]
