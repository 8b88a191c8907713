#!/usr/bin/env bash
# The prepared device check of GPU-ready attribution (benchmarks/README.md, "The GPU check"). CI never runs it.
#
#   benchmarks/gpu_check.sh                      # on a CUDA machine: Llama-3.2-1B- and Qwen3-1.7B-shaped models
#   benchmarks/gpu_check.sh --device cpu         # anywhere: 2-layer toys of the same families
#   benchmarks/gpu_check.sh --skip-lm-eval ...   # any other option goes to benchmarks/gpu_check.py (--help)
#   benchmarks/gpu_check.sh --prm PATH           # also a process reward model: its ProcessBench-format F1 on
#                                                # $PROCESSBENCH (default: the shipped sample) and its dev-set figure
#                                                # (benchmarks/locate.py --prm) where the dev set's model is reachable
#
# Needs python3 with torch and transformers. lm-eval and the dependencies the GPU image lacks are installed, if
# lm-eval is not importable, from the wheels in .whl/ (made by benchmarks/gpu_wheels.sh, carried with the tree)
# into a private folder ($LRP_SITE, default /tmp/lrp-site); without them the lm-eval part is skipped with a note.
# Everything runs offline; the whole check is cut at $GPU_CHECK_TIMEOUT seconds (default 480).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SITE=${LRP_SITE:-/tmp/lrp-site}
if ! $PY -c "import lm_eval" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    echo "gpu_check: installing $(ls .whl/*.whl | wc -l) carried wheels into $SITE"
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
      || echo "gpu_check: installing the wheels failed; the lm-eval part will be skipped"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "gpu_check: lm-eval is not installed and no wheels in .whl/ (benchmarks/gpu_wheels.sh): lm-eval part skipped"
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
  TRANSFORMERS_VERBOSITY=error PYTHONUNBUFFERED=1
PRM=""
ARGS=()
while (($#)); do
  case "$1" in
    --prm) PRM="${2:-}"; shift 2 || shift ;;
    --prm=*) PRM="${1#--prm=}"; shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
if [ -n "$PRM" ]; then
  PB=${PROCESSBENCH:-tests/data/processbench_sample.jsonl}
  echo "gpu_check: PRM $PRM on $PB (ProcessBench format)"
  timeout "${GPU_CHECK_TIMEOUT:-480}" $PY benchmarks/locate.py --processbench "$PB" \
    --prm "pretrained=$PRM,trust_remote_code=true${PRM_ARGS:+,$PRM_ARGS}" --output processbench_prm.json \
    || echo "gpu_check: the PRM's ProcessBench-format scoring failed"
  echo "gpu_check: PRM $PRM on the locate dev set (prm locator alone)"
  timeout "${GPU_CHECK_TIMEOUT:-480}" $PY benchmarks/locate.py --no_chain --locators trajectory \
    --prm "pretrained=$PRM,trust_remote_code=true${PRM_ARGS:+,$PRM_ARGS}" --output locate_prm.json \
    || echo "gpu_check: no dev-set figure (it failed or ran past GPU_CHECK_TIMEOUT; it needs the dev set's model, default SmolLM2-135M-Instruct, and lm-eval)"
  [ "${#ARGS[@]}" -eq 0 ] && [ -n "${PRM_ONLY:-}" ] && exit 0
fi
timeout "${GPU_CHECK_TIMEOUT:-480}" $PY benchmarks/gpu_check.py "${ARGS[@]}"
