"""Tiny seeded random models of every supported model type, built from transformers' own config classes.

Shapes: 2 blocks, hidden 32, 4 heads (2 kv heads, head_dim 8), MLP 64, vocab 100; MoE: 4 experts, top-2.
"""

from __future__ import annotations

import pytest
import torch
from conftest import VOCAB, randomise_norms


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models gain nothing from intra-op threads (import this fixture into a test module to use it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

SHAPE = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
    intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=128, initializer_range=0.2,
    pad_token_id=0, bos_token_id=1, eos_token_id=2,
)
MOE = dict(num_experts_per_tok=2, moe_intermediate_size=16)
#: gated delta-net layers (Qwen3-Next, Qwen3.5): 2 key heads, 4 value heads (grouped), one linear and one full layer
#: Mamba-2 mixers: 2 groups, chunk size 8 (the forward's chunked scan crosses chunk boundaries on 12-token probes)
SSM = dict(n_groups=2, chunk_size=8)
MAMBA2 = dict(mamba_n_heads=8, mamba_d_head=8, mamba_d_state=8, mamba_n_groups=2, mamba_chunk_size=8, mamba_expand=2)
LINEAR = dict(linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8, linear_value_head_dim=8,
              layer_types=["linear_attention", "full_attention"])

#: model_type -> config overrides (on top of SHAPE)
ZOO: dict[str, dict] = {
    "llama": {}, "mistral": {}, "qwen2": {}, "qwen3": {}, "gemma3_text": {}, "olmo2": {}, "olmo3": {},
    "smollm3": {"no_rope_layer_interval": 2},
    "granite": {"embedding_multiplier": 2.0, "residual_multiplier": 0.5, "attention_multiplier": 0.3,
                "logits_scaling": 4.0},
    "helium": {}, "ministral": {}, "gemma": {}, "seed_oss": {}, "exaone4": {},
    "granitemoe": {"num_local_experts": 4, "num_experts_per_tok": 2, "residual_multiplier": 0.5,
                   "embedding_multiplier": 2.0, "logits_scaling": 4.0},
    "gemma2": {"final_logit_softcapping": 3.0, "attn_logit_softcapping": 5.0},
    "phi3": {},
    "gpt_neox": {"intermediate_size": 64, "rotary_pct": 0.5},
    "gpt_neox_serial": {"use_parallel_residual": False},
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen2_moe": {"num_experts": 4, **MOE, "shared_expert_intermediate_size": 16, "mlp_only_layers": [1]},
    "qwen3_moe": {"num_experts": 4, **MOE},
    "olmoe": {"num_experts": 4, **MOE},
    "llama4_text": {"num_local_experts": 4, "num_experts_per_tok": 1, "intermediate_size": 16,
                    "intermediate_size_mlp": 64, "interleave_moe_layer_step": 2, "no_rope_layers": [1, 0],
                    "attention_chunk_size": 64},
    "gpt_oss": {"num_local_experts": 4, "num_experts_per_tok": 2, "intermediate_size": 16, "sliding_window": 64,
                "layer_types": ["sliding_attention", "full_attention"], "swiglu_limit": 1.0},
    "gemma4_text": {"hidden_size_per_layer_input": 0, "num_kv_shared_layers": 0, "global_head_dim": 8,
                    "layer_types": ["sliding_attention", "full_attention"], "sliding_window": 64},
    "gemma4_text_moe": {"hidden_size_per_layer_input": 0, "num_kv_shared_layers": 0, "global_head_dim": 8,
                        "enable_moe_block": True, "num_experts": 4, "top_k_experts": 2, "moe_intermediate_size": 16},
    "deepseek_v3": {"n_routed_experts": 4, **MOE, "n_shared_experts": 1, "first_k_dense_replace": 1, "n_group": 2,
                    "topk_group": 1, "q_lora_rank": 16, "kv_lora_rank": 16, "qk_rope_head_dim": 4,
                    "qk_nope_head_dim": 8, "v_head_dim": 8, "num_key_value_heads": 4, "head_dim": 4},
    "qwen3_next": {**LINEAR, "num_experts": 4, **MOE, "shared_expert_intermediate_size": 16},
    "qwen3_5_text": dict(LINEAR),
    "qwen3_5_moe_text": {**LINEAR, "num_experts": 4, **MOE, "shared_expert_intermediate_size": 16},
    "mamba2": {**SSM, "num_heads": 8, "head_dim": 8, "state_size": 8, "expand": 2},
    "bamba": {**MAMBA2, "attn_layer_indices": [1]},
    "granitemoehybrid": {**MAMBA2, "layer_types": ["mamba", "attention"], "num_local_experts": 4,
                         "num_experts_per_tok": 2, "shared_intermediate_size": 16, "residual_multiplier": 0.5,
                         "embedding_multiplier": 2.0, "attention_multiplier": 0.3, "logits_scaling": 4.0},
    "mamba": {"state_size": 8, "expand": 2, "time_step_rank": 4},
    "falcon_mamba": {"state_size": 8, "expand": 2, "time_step_rank": 4},
    "jamba": {"attn_layer_period": 2, "attn_layer_offset": 1, "expert_layer_period": 2, "expert_layer_offset": 1,
              "num_experts": 4, "num_experts_per_tok": 2, "mamba_d_state": 8, "mamba_expand": 2, "mamba_dt_rank": 4},
    "exaone": {}, "internlm3": {}, "iquestcoder": {},
    "lfm2": {"layer_types": ["conv", "full_attention"], "block_auto_adjust_ff_dim": False},
    "nemotron_h": {"layers_block_type": ["mamba", "moe", "attention", "mlp"], "num_hidden_layers": 4,
                   "mamba_num_heads": 8, "mamba_head_dim": 8, "ssm_state_size": 8, "n_groups": 2, "chunk_size": 8,
                   "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
                   "moe_shared_expert_intermediate_size": 16},
    "lfm2_moe": {"layer_types": ["conv", "full_attention"], "num_experts": 4, "num_experts_per_tok": 2,
                 "moe_intermediate_size": 16, "num_dense_layers": 1},
    "gpt2": {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_inner": 64, "n_positions": 128},
}


ZOO["sarvam_mla"] = dict(ZOO["deepseek_v3"])
ZOO["mistral4"] = {**ZOO["deepseek_v3"], "head_dim": None}  # derived from the q/k head dims by the config

#: model types that transformers' causal-LM auto mapping does not list: their class
CLASSES = {"mistral4": "Mistral4ForCausalLM"}


def model_type_of(name: str) -> str:
    """The transformers model type of a zoo entry (``gpt_neox_serial`` and ``gemma4_text_moe`` are variants)."""
    return name.replace("_serial", "").replace("_text_moe", "_text")


def tiny_config(name: str):
    from transformers import AutoConfig

    kw = dict(SHAPE)
    kw.update(ZOO[name])
    kw = {k: v for k, v in kw.items() if v is not None}
    return AutoConfig.for_model(model_type_of(name), **kw)


def tiny(model_type: str, *, attn: str = "eager", seed: int = 0, dtype=torch.float32) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = tiny_config(model_type)
    if model_type in CLASSES:
        import transformers

        cls = getattr(transformers, CLASSES[model_type])
        model = cls._from_config(config, attn_implementation=attn, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_config(config, attn_implementation=attn, dtype=torch.float32)
    randomise_norms(model, seed=seed + 1)
    return model.to(dtype).eval()
