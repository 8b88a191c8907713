"""Gemma2 and Gemma (1): RMSNorm with weight (1 + w), GELU-tanh gated MLP, scaled embeddings.

Gemma2 adds sandwich norms (pre/post attention and feed-forward), soft-capping of the attention scores and of the
final logits. Final logits: identity rule through c·tanh(x/c) (each logit keeps its capped value as relevance), so
CP-LRP stays conservative. Attention scores: q and k are constants under CP-LRP (nothing to decide); under AttnLRP
the plain gradient passes the cap (AttnLRP is not conservative through softmax in any case). With soft-capping the
closed-form attention edges do not apply: graphs take the batch-packed backward.
"""

from ._gated import decoder
from .base import AttentionParts

ARCHITECTURE = decoder(
    "gemma2", ("gemma2",), mid="pre_feedforward_layernorm", norm_offset=1.0,
    attention=AttentionParts(post_norm="post_attention_layernorm", closed_form=False),
)
