#!/usr/bin/env bash
# UnCoL vs supervised on hippocampus 2D slices (20-case subset, 10 % labelled), 2 seeds; CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
U=.venv/bin/uncol
for seed in 0 1; do
  for m in supervised uncol; do
    out=runs/hippo20/${m}_s${seed}
    if [ ! -f $out/eval/metrics.json ]; then
      /usr/bin/time -f "$m seed $seed: %e s" $U train benchmarks/configs/hippo20_2d_${m}.yaml --out $out \
        --set train.seed=$seed
      $U evaluate --checkpoint $out/best.pt --data data/hippo20 --split test --out $out/eval
    fi
  done
done
