#!/usr/bin/env bash
# The miniature's whole grid on one GPU (issue 12), one call: both CLIP targets with UPT and the text
# part, the same protocol as the CPU grid, results named after the GPU:
#   MVLPT_DATA=../shared/data bash benchmarks/miniature_gpu.sh     # extra flags go to miniature.py
set -euo pipefail
cd "$(dirname "$0")/.."
export MVLPT_DATA="${MVLPT_DATA:-../shared/data}"
export MVLPT_SHARED_DATA="${MVLPT_SHARED_DATA:-${MVLPT_DATA}}"
tag=$(python -c "import torch; n=torch.cuda.get_device_name(0).replace('NVIDIA','').strip(); print(n.split()[0].lower())")
mkdir -p runs
python benchmarks/miniature.py --device cuda --upt --targets flowers5 sign_digits --tag "gpu_${tag}" "$@" \
  2>&1 | tee "runs/miniature_gpu_${tag}.log"
