"""Closed-form edges of the attention transition ``x -> mid`` of one decoder block (no autograd per row).

For softmax attention as the model's adapter describes it (:class:`~lm_eval_lrp.lrp.arch.AttentionParts`: q/k/v
or a fused projection, norms, RoPE; no architecture tables here): the modified backward of one attention layer written out, with
P the attention probabilities, U_j = (modified) o_proj-backward of g_j, G_ji = ⟨U^h_j, v^h_i⟩,
D_ji = P_ji (G_ji − Σ_i' P_ji' G_ji'), s_ji = scale · q_j·k_i and (f_q, f_k, f_v) the rules' factors
on q, k, v (AttnLRP: ¼, ¼, ½; CP-LRP: 0, 0, 1)::

    A[j,i] = f_v Σ_h P^h_ji ⟨U^h_j, v̄^h_i⟩ + f_k Σ_h D^h_ji s̄^h_ji            (value path, key path)
           + δ_ij ( h_x[j]·g[j] + f_q Σ_h Σ_i' D^h_ji' s̃^h_ji' )             (residual, query path)

(bars: the key/value without their projection bias -- biases absorb relevance; s̃ with the bias-free query).
The norms before q/k/v and after o_proj pass relevance unchanged (identity rule), so they drop out.
Before use, the captured q, k, v, mask and scaling are checked to reproduce the block's attention output;
anything unexpected (soft-capping, sinks, a bias feeding a q/k norm) returns ``None`` -> autograd path.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from ..lrp.layerwise import run_block
from ..lrp.arch import Architecture, architecture_of
from ..lrp.dispatch import parameter
from ..lrp.rules import FusedQKV, GradScale, NormIdentity, StopGradient


def _factor(rule) -> float | tuple | None:
    """Gradient factor of a rule on a projection output: GradScale -> its factor, StopGradient -> 0, none -> 1."""
    if rule is None:
        return 1.0
    if isinstance(rule, StopGradient):
        return 0.0
    if isinstance(rule, FusedQKV):
        return rule.qkv
    if isinstance(rule, GradScale) and rule.where == "output" and not isinstance(rule.factor, torch.Tensor):
        return float(rule.factor)
    return None


@contextmanager
def _capture_attention(arch: Architecture, attn_modules, store: list):
    """Record (q, k, v, mask, kwargs) of each call of the given attention modules, via removable forward pre-hooks.

    q, k, v are recomputed by the adapter (:meth:`Architecture.qkv`) from the module's own input; nothing is
    registered in transformers' shared attention registry. The closed form checks them against the real attention
    output and falls back to the batched backward if they do not reproduce it."""

    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs.get("hidden_states")
        with torch.no_grad():
            q, k, v = arch.qkv(module, hidden, kwargs.get("position_embeddings"))
        kw = {"scaling": getattr(module, "scaling", None), "sliding_window": getattr(module, "sliding_window", None),
              "dropout": 0.0}
        store.append({"module": module, "q": q, "k": k, "v": v, "mask": kwargs.get("attention_mask"), "args": (), "kw": kw})

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in attn_modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _attention_parts(layer: nn.Module, arch: Architecture):
    """(attention module, projection names, projections, o_proj, post-norm, pre-norm) of one block, from the adapter;
    None where the adapter rules the closed form out or the block has no such attention (hybrid models)."""
    parts = arch.attention
    if not parts.closed_form:
        return None
    attn = arch.attention_module(layer)
    if attn is None:
        return None
    names = parts.projections()
    projs = [getattr(attn, n, None) for n in names]
    o_proj = getattr(attn, parts.o, None)
    if any(p is None for p in projs) or o_proj is None:
        return None
    post = getattr(layer, parts.post_norm) if parts.post_norm else None
    pre = getattr(layer, parts.pre_norm, None) if parts.pre_norm else None
    return attn, names, projs, o_proj, post, pre


def _mask_bias(mask, rows: torch.Tensor, T: int, device) -> torch.Tensor:
    """Additive mask [1|H, C, T] for the query rows ``rows`` (None -> causal)."""
    if mask is None:
        cols = torch.arange(T, device=device)
        allowed = cols.unsqueeze(0) <= rows.unsqueeze(1)
        return torch.where(allowed, 0.0, float("-inf")).unsqueeze(0)
    m = mask[0, :, rows, :T]
    if m.dtype == torch.bool:
        return torch.where(m, 0.0, float("-inf"))
    return m.float()


def closed_form_attention_rows(
    model: nn.Module,
    layer: nn.Module,
    mid_module: nn.Module,
    x: torch.Tensor,
    args: tuple,
    kwargs: dict,
    g_mid: torch.Tensor,
    targets: torch.Tensor,
    applied_rules: dict[int, object],
    *,
    chunk: int = 256,
    check: bool = True,
    captured: tuple | None = None,
):
    """Rows ``A[targets, :]`` of the attention transition ``x -> mid`` in closed form, or None if unsupported.

    ``applied_rules`` maps ``id(module)`` to the LRP rule the active composite put on it. ``captured``: the
    ``(attention call, o_proj input, mid)`` already recorded for this block by an :class:`AttentionCapture`
    (saves re-running the attention).
    """
    arch = architecture_of(model)
    parts = _attention_parts(layer, arch)
    if parts is None:
        return None
    attn, names, projs, o_proj, post, pre = parts
    branch_scale = arch.branch_scale(layer) if arch.branch_scale else 1.0
    T = x.shape[-2]
    if len(projs) == 1:
        fused = _factor(applied_rules.get(id(projs[0])))
        if not isinstance(fused, tuple):
            return None
        fq, fk, fv = fused
    else:
        fq, fk, fv = (_factor(applied_rules.get(id(p))) for p in projs)
        if any(not isinstance(f, float) for f in (fq, fk, fv)):
            return None
    qk_norms = [getattr(attn, n) for n in (arch.attention.q_norm, arch.attention.k_norm) if n]
    for norm in qk_norms:
        if not isinstance(applied_rules.get(id(norm)), NormIdentity):
            return None
    for norm in (post, pre):  # norms around the attention must pass relevance unchanged (identity rule)
        if norm is not None and not isinstance(applied_rules.get(id(norm)), NormIdentity):
            return None
    if id(o_proj) in applied_rules:
        return None
    # biases absorb relevance: the projection biases and a bias of the norm before attention (LayerNorm)
    biased = [p for p in projs + [pre] if p is not None and getattr(p, "bias", None) is not None]
    has_bias = bool(biased)
    if has_bias and qk_norms:
        return None  # a bias feeding a norm: the bias-free share is not the norm of the bias-free projection

    def capture(strip_bias: bool):
        store, handles, o_in = [], [], []
        if strip_bias:
            for p in biased:
                handles.append(p.register_forward_hook(lambda m, a, out: out - parameter(m, "bias")))  # offloaded: loaded
        handles.append(o_proj.register_forward_pre_hook(lambda m, a: o_in.append(a[0])))
        try:
            with torch.no_grad(), _capture_attention(arch, [attn], store):
                mid, _ = run_block(layer, mid_module, x.detach(), kwargs, args, stop_at_mid=True)
        finally:
            for h in handles:
                h.remove()
        if len(store) != 1 or len(o_in) != 1:
            return None
        return store[0], o_in[0], mid

    got = captured if captured is not None else capture(False)
    if got is None:
        return None
    cap, o_in, mid = got
    kw = cap["kw"]
    if cap["args"] or kw.get("softcap") is not None or kw.get("s_aux") is not None or kw.get("sinks") is not None:
        return None
    if getattr(getattr(attn, "config", None), "attn_logit_softcapping", None) is not None:
        return None
    if kw.get("dropout", 0.0):
        return None
    if targets.numel() == 0:
        return torch.zeros(0, T, dtype=torch.float32)
    o_in, mid = o_in.detach(), mid.detach()
    q, k, v = (t.detach()[0].float() for t in (cap["q"], cap["k"], cap["v"]))  # [H|Hkv, T, hd]
    if q.shape[-2] != T or k.shape[-2] != T:
        return None
    H, Hkv, hd = q.shape[0], k.shape[0], q.shape[-1]
    if H % Hkv:
        return None
    rep = H // Hkv
    scaling = kw.get("scaling")
    if scaling is None:
        scaling = getattr(attn, "scaling", None) or hd**-0.5
    mask = cap["mask"]
    window = kw.get("sliding_window")
    if mask is None and window is not None and T > window:
        return None
    if mask is not None and (mask.dim() != 4 or mask.shape[0] != 1):
        return None
    if has_bias:
        got_nb = capture(True)
        if got_nb is None:
            return None
        q0, k0, v0 = (t.detach()[0].float() for t in (got_nb[0]["q"], got_nb[0]["k"], got_nb[0]["v"]))
    else:
        q0, k0, v0 = q, k, v

    # U_j = modified backward of g_j through (post-norm ∘) o_proj, per head, for the target rows only: [n', H, hd]
    # (o_proj and the norms act row by row, so the target rows are computed exactly on their own)
    with torch.enable_grad():
        z = o_in.detach()[:, targets].clone().requires_grad_(True)
        y = o_proj(z)
        if post is not None:
            y = post(y)
        y = y * branch_scale
        (U,) = torch.autograd.grad(y, [z], grad_outputs=g_mid.detach()[:, targets].to(y.dtype).reshape(y.shape))
    U = U.detach()[0].float().reshape(targets.numel(), H, hd)

    # the captured pieces must reproduce the block (on sample rows): mid = x + branch, and the attention output
    if check:
        sample = torch.unique(torch.cat([targets[:4], targets[-4:]]))
        with torch.no_grad():
            branch = o_proj(o_in.detach()[:, sample])
            if post is not None:
                branch = post(branch)
            branch = branch * branch_scale
        ref_mid = mid[:, sample].float()
        if not torch.allclose(x.detach()[:, sample].float() + branch.float(), ref_mid, rtol=1e-5, atol=1e-5 * float(ref_mid.abs().max())):
            return None
        o_ref = o_in.detach()[0, sample].float().reshape(sample.numel(), H, hd)
        m_s = _mask_bias(mask, sample, T, q.device)
        for h in range(H):
            s = (q[h, sample] @ k[h // rep].T) * scaling + (m_s[0] if m_s.shape[0] == 1 else m_s[h])
            o_h = torch.softmax(s, dim=-1) @ v[h // rep]
            scale = float(o_ref[:, h].abs().max()) + 1e-12
            if not torch.allclose(o_h, o_ref[:, h], rtol=1e-4, atol=1e-4 * scale):
                return None

    r_resid = (x.detach()[0].float() * g_mid.detach()[0].float()).sum(-1)  # h_x[j]·g[j]
    rows_out = torch.zeros(targets.numel(), T, dtype=torch.float32)
    for start in range(0, targets.numel(), chunk):
        rows = targets[start : start + chunk]
        C = rows.numel()
        m = _mask_bias(mask, rows, T, q.device)
        # causal: columns after the chunk's last query are masked for every row of it -> skip them (exactly 0)
        hi = int(rows.max()) + 1
        if hi < T and not bool((m[..., hi:] < -1e30).all()):
            hi = T
        m = m[..., :hi]
        acc = torch.zeros(C, hi, dtype=torch.float32)
        diag = r_resid[rows].clone()
        for h in range(H):
            kv = h // rep
            qh, kh, vh = q[h, rows], k[kv, :hi], v[kv, :hi]
            s = (qh @ kh.T) * scaling  # [C, hi] unmasked scaled scores
            P = torch.softmax(s + (m[0] if m.shape[0] == 1 else m[h]), dim=-1)
            Uh = U[start : start + C, h]  # [C, hd]
            G = Uh @ vh.T  # ∂⟨out_j, g_j⟩/∂P_ji
            if fv:
                Gv = G if v0 is v else Uh @ v0[kv, :hi].T
                acc += fv * P * Gv
            if fq or fk:
                D = P * (G - (P * G).sum(-1, keepdim=True))
                if fk:
                    sk = s if k0 is k else (qh @ k0[kv, :hi].T) * scaling
                    acc += fk * D * sk
                if fq:
                    sq = s if q0 is q else (q0[h, rows] @ kh.T) * scaling
                    diag += fq * (D * sq).sum(-1)
        acc[torch.arange(C), rows] += diag
        rows_out[start : start + C, :hi] = acc
    return rows_out


class AttentionCapture:
    """Records, for every decoder block run inside it, the attention call (q, k, v, mask, kwargs) and the o_proj
    input, so that the closed form can reuse the layerwise backward's own forward of the block."""

    def __init__(self, model: nn.Module, layers: list[nn.Module]):
        self.model = model
        self.layers = layers
        self.calls: dict[int, dict] = {}
        self.o_in: dict[int, torch.Tensor] = {}
        self._handles: list = []
        self._ctx = None

    def __enter__(self):
        self.arch = architecture_of(self.model)
        attns = []
        for layer in self.layers:
            parts = _attention_parts(layer, self.arch)
            if parts is None:
                continue
            attn, o_proj = parts[0], parts[3]
            attns.append(attn)
            key = id(attn)
            self._handles.append(o_proj.register_forward_pre_hook(lambda m, a, key=key: self._keep_o(key, a[0])))
        store = _Recorder(self.calls)
        self._ctx = _capture_attention(self.arch, attns, store)
        self._ctx.__enter__()
        return self

    def _keep_o(self, key, t):
        if t.shape[0] == 1:  # the block's own run (batch-packed reference runs are not recorded)
            self.o_in[key] = t.detach()

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._ctx.__exit__(*exc)

    def pop(self, layer: nn.Module, mid: torch.Tensor):
        key = id(self.arch.attention_module(layer))
        call, o_in = self.calls.pop(key, None), self.o_in.pop(key, None)
        if call is None or o_in is None:
            return None
        return call, o_in, mid


class _Recorder(list):
    """A list-like sink for :func:`_capture_attention` that keeps the last call per attention module (detached)."""

    def __init__(self, calls: dict):
        super().__init__()
        self.calls = calls

    def append(self, item):
        if item["q"].shape[0] != 1:
            return
        item = dict(item)
        for name in ("q", "k", "v"):
            item[name] = item[name].detach()
        self.calls[id(item["module"])] = item


def closed_form_supported(model: nn.Module) -> bool:
    """Whether the model's adapter allows the closed-form attention edges (the check on real values still applies)."""
    try:
        return architecture_of(model).attention.closed_form
    except ValueError:
        return False
