"""AttnLRP / CP-LRP written directly on the operations of a decoder forward: no hooks, no engine code.

The rules (AttnLRP, Achtibat et al. 2024; CP-LRP): norms with 1/σ constant; element-wise activations with the
identity rule (backward f(x)/x); the uniform rule (½ per factor) on act(gate)·up, q·kᵀ and P·V; plain softmax;
CP-LRP: q, k and act(gate) constant. Mixture of experts: routing weights constant. Logit soft-capping at the head:
identity rule. Covers the Llama-shaped families (pre-norm, sandwich norms, post-norms; q/k norms; fused q|k|v and
gate|up; MoE with shared experts; Granite's multipliers).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F


def uniform(a, b, op):
    """op(a, b) whose backward gives each factor half the relevance."""
    return 0.5 * (op(a, b.detach()) + op(a.detach(), b))


def norm(module, x, offset):
    eps = getattr(module, "variance_epsilon", None) or getattr(module, "eps", 1e-6)
    inv = torch.rsqrt(x.detach().pow(2).mean(-1, keepdim=True) + eps)
    weight = getattr(module, "weight", None)
    return x * inv * (weight + offset) if weight is not None else x * inv


def identity_act(fn, x):
    """fn(x) with backward g · fn(x)/x."""
    value = fn(x.detach())
    ratio = torch.where(x.detach() == 0, torch.ones_like(x), value / torch.where(x.detach() == 0, torch.ones_like(x), x.detach()))
    return value + (x - x.detach()) * ratio


def gated(act_fn, gate, up, variant):
    if variant == "cp":
        return act_fn(gate).detach() * up
    return uniform(identity_act(act_fn, gate), up, torch.mul)


def mlp(module, x, variant):
    if hasattr(module, "experts"):
        return moe(module, x, variant)
    if hasattr(module, "gate_up_proj"):  # Phi-3
        gate, up = module.gate_up_proj(x).chunk(2, dim=-1)
        return module.down_proj(gated(module.activation_fn, gate, up, variant))
    return module.down_proj(gated(module.act_fn, module.gate_proj(x), module.up_proj(x), variant))


def moe(block, x, variant, router=None, experts=None, x_route=None):
    router = router or getattr(block, "gate", None) or block.router
    _, weights, index = router((x if x_route is None else x_route).detach().view(-1, x.shape[-1]))
    weights, experts = weights.detach(), experts or block.experts
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for slot in range(index.shape[1]):
            e = int(index[t, slot])
            gate, up = F.linear(x[t], experts.gate_up_proj[e]).chunk(2, dim=-1)
            y = F.linear(gated(experts.act_fn, gate, up, variant), experts.down_proj[e]) * weights[t, slot]
            out = out + F.one_hot(torch.tensor(t), x.shape[0]).to(x.dtype)[:, None] * y
    if block is None:
        return out
    if hasattr(block, "shared_expert"):
        out = out + torch.sigmoid(block.shared_expert_gate(x)).detach() * mlp(block.shared_expert, x, variant)
    if hasattr(block, "shared_experts"):
        out = out + mlp(block.shared_experts, x, variant)
    return out


def _rope(attn, name="apply_rotary_pos_emb"):
    import importlib

    return getattr(importlib.import_module(type(attn).__module__), name)


def qkv_heads(model, attn, x, position_embeddings, offset):
    """q, k, v as [H, T, d] (GQA repeated), after q/k norms and RoPE."""
    cfg = model.config
    T = x.shape[0]
    H, Hkv, hd = cfg.num_attention_heads, cfg.num_key_value_heads, attn.head_dim
    if hasattr(attn, "qkv_proj"):
        q, k, v = attn.qkv_proj(x).split([H * hd, Hkv * hd, Hkv * hd], dim=-1)
    else:
        q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
    qn, kn = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
    flat = qn is not None and qn.weight.shape[-1] != hd
    if flat:
        q, k = norm(qn, q, offset), norm(kn, k, offset)
    q, k, v = q.view(T, -1, hd), k.view(T, -1, hd), v.view(T, -1, hd)
    if qn is not None and not flat:
        q, k = norm(qn, q, offset), norm(kn, k, offset)
    if getattr(attn, "v_norm", None) is not None:
        v = norm(attn.v_norm, v, offset)
    q, k, v = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
    if getattr(attn, "use_rope", True) and position_embeddings is not None:
        rope = _rope(attn)
        # one tensor at a time (Gemma 4); the `kernels` package wraps the function as (*args, **kwargs), so the
        # signature cannot tell: Gemma 4's modeling file is named instead
        per_tensor = "gemma4" in type(attn).__module__ or "x" in inspect.signature(rope).parameters
        if not per_tensor:
            q, k = rope(q, k, *position_embeddings)
        else:
            q, k = (rope(t, *position_embeddings, unsqueeze_dim=1) for t in (q, k))
    return q[0], k[0].repeat_interleave(H // Hkv, 0), v[0].repeat_interleave(H // Hkv, 0)


def mla_heads(model, attn, x, position_embeddings):
    """DeepSeek's multi-head latent attention: q, k, v as [H, T, d]."""
    T, H = x.shape[0], attn.num_heads
    nope, rope, dv = attn.qk_nope_head_dim, attn.qk_rope_head_dim, attn.v_head_dim
    q = attn.q_proj(x) if attn.q_proj is not None else attn.q_b_proj(norm(attn.q_a_layernorm, attn.q_a_proj(x), 0.0))
    q_pass, q_rot = q.view(T, H, nope + rope).transpose(0, 1).split([nope, rope], dim=-1)
    c_kv, k_rot = attn.kv_a_proj_with_mqa(x).split([attn.kv_lora_rank, rope], dim=-1)
    kv = attn.kv_b_proj(norm(attn.kv_a_layernorm, c_kv, 0.0)).view(T, H, nope + dv).transpose(0, 1)
    k_nope, v = kv.split([nope, dv], dim=-1)
    fn = _rope(attn, "apply_rotary_pos_emb_interleave" if model.config.rope_interleave else "apply_rotary_pos_emb")
    q_rot, k_rot = fn(q_rot.unsqueeze(0), k_rot.view(1, 1, T, rope), *position_embeddings)
    k = torch.cat([k_nope, k_rot[0].expand(H, -1, -1)], dim=-1)
    return torch.cat([q_pass, q_rot[0]], dim=-1), k, v


def attention(model, attn, x, position_embeddings, variant, offset):
    T = x.shape[0]
    if hasattr(attn, "kv_b_proj"):
        q, k, v = mla_heads(model, attn, x, position_embeddings)
    else:
        q, k, v = qkv_heads(model, attn, x, position_embeddings, offset)
    if variant == "cp":
        q, k = q.detach(), k.detach()
    scores = uniform(q, k, lambda a, b: a @ b.transpose(-1, -2)) * attn.scaling
    cap = getattr(model.config, "attn_logit_softcapping", None)
    if cap:
        scores = torch.tanh(scores / cap) * cap
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    probs = torch.softmax(scores.masked_fill(~causal, float("-inf")), -1)
    ctx = uniform(probs, v, torch.matmul) if variant == "attnlrp" else probs @ v
    return attn.o_proj(ctx.transpose(0, 1).reshape(T, -1))


def position_embeddings_of(model, ids):
    """The (cos, sin) each attention module receives in a plain forward (captured with removable pre-hooks)."""
    got, handles = {}, []
    for i, layer in enumerate(model.model.layers):
        def keep(m, a, kw, i=i):
            got[i] = kw.get("position_embeddings")
        handles.append(layer.self_attn.register_forward_pre_hook(keep, with_kwargs=True))
    try:
        with torch.no_grad():
            model(ids.unsqueeze(0))
    finally:
        for h in handles:
            h.remove()
    return got


def reference_relevance(model, ids, target, contrast, variant):
    """Node relevance ``[2L+1, T]`` (embed, then per block: after attention, after MLP) of Δℓ under the rules."""
    cfg = model.config
    offset = 1.0 if cfg.model_type in ("gemma", "gemma2", "gemma3_text") else 0.0
    pe = position_embeddings_of(model, ids)
    emb = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    h = emb * getattr(cfg, "embedding_multiplier", 1.0)
    nodes, rm = [emb], getattr(cfg, "residual_multiplier", 1.0)
    for i, layer in enumerate(model.model.layers):
        post_ff = getattr(layer, "post_feedforward_layernorm", None)
        pre_ff = getattr(layer, "pre_feedforward_layernorm", None)
        x = norm(layer.input_layernorm, h, offset) if hasattr(layer, "input_layernorm") else h
        a = attention(model, layer.self_attn, x, pe[i], variant, offset)
        if post_ff is not None:  # a norm after attention inside the branch (sandwich / post-norm)
            a = norm(layer.post_attention_layernorm, a, offset)
        h = h + a * rm
        nodes.append(h)
        if pre_ff is not None:
            x = norm(pre_ff, h, offset)
        elif post_ff is None:
            x = norm(layer.post_attention_layernorm, h, offset)
        else:
            x = h
        m = mlp(getattr(layer, "mlp", None) or layer.block_sparse_moe, x, variant)
        if getattr(layer, "enable_moe_block", False):  # Gemma 4: a MoE branch beside the dense MLP
            routed = moe(None, norm(layer.pre_feedforward_layernorm_2, h, offset), variant, layer.router, layer.experts,
                         x_route=h)
            m = norm(layer.post_feedforward_layernorm_1, m, offset) + norm(layer.post_feedforward_layernorm_2, routed, offset)
        if post_ff is not None:
            m = norm(post_ff, m, offset)
        h = (h + m * rm) * getattr(layer, "layer_scalar", 1.0)
        nodes.append(h)
    logits = model.lm_head(norm(model.model.norm, h, offset)[-1])[[target, contrast]] / getattr(cfg, "logits_scaling", 1.0)
    cap = getattr(cfg, "final_logit_softcapping", None)
    if cap:
        logits = logits * (torch.tanh(logits / cap) * cap / logits).detach()
    grads = torch.autograd.grad(logits[0] - logits[1], nodes)
    return torch.stack([(n.detach() * g).sum(-1) for n, g in zip(nodes, grads)])


def assert_matches_reference(model, ids, variant: str, rtol: float = 1e-5) -> None:
    """The engine's node and input relevance equal :func:`reference_relevance` (top token vs bottom token)."""
    from lm_eval_lrp.lrp import explain

    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        logits = model(ids.unsqueeze(0)).logits[0, -1]
    target, contrast = int(logits.argmax()), int(logits.argmin())
    e = explain(model, ids, target=target, contrast=contrast, rule=variant)
    ref = reference_relevance(model, ids, target, contrast, variant)
    assert ref.shape == e.node_relevance.shape
    for got, want in ((e.node_relevance, ref), (e.input_relevance, ref[0])):
        assert float((got - want).abs().max()) <= rtol * float(ref.abs().max())
