#!/usr/bin/env bash
# Runs ON a lent GPU machine (the device tool), from the repository root, over a pack made here by
# scripts/device_pack.py and carried as .device (see "On a GPU" in training_state/README.md):
#
#   bash scripts/gpu_session.sh tests                       # tests/test_cuda.py; log in $OUT
#   bash scripts/gpu_session.sh train RUN SECONDS [FLAGS]   # continue training_state/RUN on the GPU for SECONDS,
#                                                           # then bring its state back in $OUT
#
# litesr is not installed there (that machine's torch is another version and nothing can be fetched): it runs from
# src/. A run stopped by the time limit checkpoints itself (SIGTERM), as on any machine.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src" LITESR_SHARED="$PWD/.device/shared" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/litesr-out}"
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/device.txt"

case "${1:-}" in
  tests)
    python -m pytest -q tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log"
    ;;
  train)
    run="training_state/${2:?run folder under training_state/}"
    seconds="${3:?seconds of training}"
    shift 3
    timeout -s TERM "$seconds" python -m litesr train --out "$run" --resume --device cuda --workers 8 \
      --train-data "$LITESR_SHARED/data/train/T91" "$LITESR_SHARED/data/train/BSD200" \
      --val-data "$LITESR_SHARED/data/benchmarks" --cache-dir /tmp/litesr-cache --log-every 100 "$@" \
      2>&1 | tee "$OUT/train.log"
    # the run's files as they are here; its config names this machine's data paths, so it comes back renamed
    for f in state.pt last.safetensors best.safetensors best.json metrics.jsonl; do
      [ -f "$run/$f" ] && cp "$run/$f" "$OUT/"
    done
    cp "$run/config.yaml" "$OUT/config_gpu.yaml"
    ;;
  *)
    echo "usage: bash scripts/gpu_session.sh tests | train RUN SECONDS [litesr train flags]" >&2
    exit 2
    ;;
esac
