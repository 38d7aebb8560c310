#!/usr/bin/env bash
# GPU checks for export (issue 5): CUDA-trained runs exported and verified, TorchScript on CUDA,
# --backend onnxruntime with --device cuda, and the TensorRT path (torch-tensorrt), in under 5 minutes.
#
# Run from the repository root on a CUDA machine that has this repo's .venv:
#   bash benchmarks/gpu_export_check.sh
# torch-tensorrt is pip-installed only if missing (capped at 60 s, torch pinned; set
# TRY_INSTALL=0 to skip). With $OUT set, the log is also written to $OUT/gpu_export_check.log.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
LOG=${OUT:-/tmp}/gpu_export_check.log
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi failed"
  if ! "$PY" -c "import torch_tensorrt" 2>/dev/null; then
    if [ "${TRY_INSTALL:-1}" = 1 ]; then
      TORCH=$("$PY" -c "import torch; print(torch.__version__)")
      MINOR=$(echo "$TORCH" | cut -d+ -f1 | cut -d. -f1,2)
      echo "torch_tensorrt missing: pip install torch-tensorrt==${MINOR}.* (torch pinned to $TORCH, 60 s cap)"
      echo "torch==$TORCH" > /tmp/torch-constraint.txt
      timeout 60 "$PY" -m pip install -q --retries 0 --timeout 15 -c /tmp/torch-constraint.txt \
        "torch-tensorrt==${MINOR}.*" || echo "pip install torch-tensorrt failed or timed out (status $?)"
    fi
  fi
  "$PY" -c "import torch_tensorrt; print('torch_tensorrt', torch_tensorrt.__version__)" 2>&1 | tail -1
  timeout 230 "$PY" benchmarks/gpu_export_check.py
  echo "exit status $?"
} 2>&1 | tee "$LOG"
