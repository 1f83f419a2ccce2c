#!/usr/bin/env bash
# Issue 2 acceptance: supervised training on the two real datasets, then `uncol evaluate` on the held-out split.
set -euo pipefail
cd "$(dirname "$0")/.."
U=.venv/bin/uncol
[ -f data/hc18_full/dataset.json ] || $U data import-folder ../shared/data/hc18_fetal_head_us/images \
  ../shared/data/hc18_fetal_head_us/masks data/hc18_full --label-suffix _mask
for c in hc18_2d_supervised_full:data/hc18_full hippocampus_3d_supervised_full:../shared/data/msd_task04_hippocampus; do
  name=${c%%:*}; data=${c#*:}
  /usr/bin/time -f "$name train: %e s" $U train benchmarks/configs/$name.yaml --out runs/$name
  /usr/bin/time -f "$name evaluate: %e s" $U evaluate --checkpoint runs/$name/best.pt --data $data --split test --out runs/$name/eval
done
