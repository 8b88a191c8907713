"""DeepSeek-V3 (``deepseek_v3``; ``sarvam_mla`` loads into the same class; Mistral 4, ``mistral4``, has the same
blocks with interleaved RoPE): multi-head latent attention (MLA) and a sparse MoE with shared experts.

MLA: q = q_b_proj(norm(q_a_proj(x))) (or q_proj(x)); a latent c = kv_a_proj_with_mqa(x) = [c_kv | k_rot]; then
[k_nope | v] per head = kv_b_proj(norm(c_kv)), and k = [k_nope | RoPE(k_rot)] shared by all heads. The factors of
the uniform rule sit where q, k and v are produced: q (q_b_proj / q_proj output), k_nope and v (kv_b_proj output,
per-head slices), k_rot (the last features of kv_a_proj_with_mqa); the latent c_kv passes unchanged (its share
reaches k and v through kv_b_proj). Router (sigmoid, grouped top-k, scaling): constant, see :mod:`.moe`.
The first ``first_k_dense_replace`` layers have a dense gated MLP. Graphs use the batch-packed backward.
"""


from ..rules import FusedQKV, GradScale, NormIdentity, StopGradient
from ._gated import norm_rule
from .base import Architecture, AttentionParts
from .moe import MOE_GROUPS, MOE_OPTIONAL, moe_mlp_rules


def _kv_b_layout(module, block) -> list:
    a = block.self_attn
    return [(slot, n) for _ in range(a.num_heads) for slot, n in (("k", a.qk_nope_head_dim), ("v", a.v_head_dim))]


def _kv_a_layout(module, block) -> list:
    a = block.self_attn
    return [("1", a.kv_lora_rank), ("k", a.qk_rope_head_dim)]


def rules(variant: str) -> list:
    fq, fk, fv = (0.0, 0.0, 1.0) if variant == "cp" else (0.25, 0.25, 0.5)
    q = StopGradient() if variant == "cp" else GradScale(fq)
    return [
        ("*norm", NormIdentity("rms")),
        ("self_attn.q_b_proj", q),
        ("self_attn.q_proj", q),
        ("self_attn.kv_b_proj", FusedQKV(fq, fk, fv, layout=_kv_b_layout)),
        ("self_attn.kv_a_proj_with_mqa", FusedQKV(fq, fk, fv, layout=_kv_a_layout)),
    ] + moe_mlp_rules(variant, shared="mlp.shared_experts")


ARCHITECTURE = Architecture(
    name="deepseek_v3",
    model_types=("deepseek_v3", "sarvam_mla", "mistral4"),
    block_rules=rules,
    final_rule=norm_rule("rms"),
    attention=AttentionParts(closed_form=False),
    containers=("self_attn", "mlp", "mlp.shared_experts"),
    optional=MOE_OPTIONAL + ("self_attn.q_b_proj", "self_attn.q_proj"),
    groups=MOE_GROUPS + (("self_attn.q_b_proj", "self_attn.q_proj"),),
)
