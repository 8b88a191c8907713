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
# Everything runs offline. Part 1 (gpu_check.py) is cut at $GPU_CHECK_TIMEOUT seconds (default 290), part 2
# (gpu_extra.py: harness ÷ engine, batched rollouts, a model split over GPU and CPU, gsm8k with --lrp; its report
# beside --out as *_extra.json) at $GPU_EXTRA_TIMEOUT (default 180): under 8 minutes in all.
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
# part 1 (gpu_check.py): model checks and lm-eval plain vs --lrp, about 250 s on an H200
timeout "${GPU_CHECK_TIMEOUT:-290}" $PY benchmarks/gpu_check.py "${ARGS[@]}"
first=$?
# part 2 (gpu_extra.py, issue 24): harness ÷ engine, batched rollouts, a model split over GPU and CPU, gsm8k with --lrp
DEVICE=cuda; OUT=gpu_check.json; prev=""
for a in "${ARGS[@]}"; do
  [ "$prev" = "--device" ] && DEVICE=$a
  [ "$prev" = "--out" ] && OUT=$a
  prev=$a
done
EXTRA=${GPU_EXTRA_TIMEOUT:-180}
timeout "$EXTRA" $PY benchmarks/gpu_extra.py --device "$DEVICE" --budget $((EXTRA - 15)) --out "${OUT%.json}_extra.json"
second=$?
echo "gpu_check.sh: part 1 exit $first, part 2 exit $second (124: cut at its time limit)"
[ $first -eq 0 ] && [ $second -eq 0 ]
