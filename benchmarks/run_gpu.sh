#!/usr/bin/env bash
# Both training-throughput benchmarks at real sizes (ViT-B-16, t5-base) on the GPU, results named after it.
#   bash benchmarks/run_gpu.sh            # writes benchmarks/results/{clip,t5}_train_throughput_<gpu>.json
#   bash benchmarks/run_gpu.sh --no-flops # extra flags go to both scripts
set -euo pipefail
cd "$(dirname "$0")/.."
tag=$(python -c "import torch; n=torch.cuda.get_device_name(0).replace('NVIDIA','').strip(); print(n.split()[0].lower())")
python benchmarks/t5_train_throughput.py --size real --device cuda --variants ours,peft,peft_encoder,ours_score_all \
  --out "benchmarks/results/t5_train_throughput_${tag}.json" "$@"
python benchmarks/clip_train_throughput.py --size real --device cuda \
  --out "benchmarks/results/clip_train_throughput_${tag}.json" "$@"
