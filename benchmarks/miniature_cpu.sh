#!/usr/bin/env bash
# The miniature's whole CPU grid (issue 12) as one command: the two CLIP targets and the text part
# run side by side, one thread each, into benchmarks/results/miniature_cpu_{flowers5,sign_digits,text}.*
#   MVLPT_DATA=../shared/data bash benchmarks/miniature_cpu.sh            # extra flags go to every part
#   PARTS="flowers5 sign_digits" MVLPT_DATA=../shared/data bash benchmarks/miniature_cpu.sh   # CLIP only
#   OUT=runs/miniature_v4 ...                                               # where the runs go
set -euo pipefail
cd "$(dirname "$0")/.."
export MVLPT_DATA="${MVLPT_DATA:-../shared/data}"
export MVLPT_SHARED_DATA="${MVLPT_SHARED_DATA:-${MVLPT_DATA}}"
export OMP_NUM_THREADS=1
OUT="${OUT:-runs/miniature_v4}"
mkdir -p runs
start=$(date +%s)
pids=()
for part in ${PARTS:-flowers5 sign_digits text}; do
  if [ "$part" = text ]; then
    python benchmarks/miniature.py --device cpu --skip-clip --tag cpu_text --out-dir "$OUT" \
      --text-steps 60 --text-source-train 1000 --text-max-eval 1000 --text-source-max-eval 300 "$@" > runs/miniature_cpu_text.log 2>&1 &
  else
    python benchmarks/miniature.py --device cpu --skip-text --upt --targets "$part" --tag "cpu_${part}" \
      --out-dir "$OUT" "$@" \
      > "runs/miniature_cpu_${part}.log" 2>&1 &
  fi
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
echo "miniature CPU grid (${PARTS:-flowers5 sign_digits text}): $(( $(date +%s) - start )) s wall (logs: runs/miniature_cpu_*.log)"
exit $status
