#!/usr/bin/env bash
# The GPU figures of issue 17 in one prepared call, for a session that is lent a CUDA machine:
# images/s against the ceiling (gpu_images.py) and the LoRA step on BERT-base (lora_speed.py).
#
# Run from the repository root on the CUDA machine, whose python3 already holds torch,
# torchvision, timm, transformers, peft and safetensors (transferkit itself runs from src/):
#   bash benchmarks/gpu_session.sh     # capped at 330 + 150 s; give the call a 540 s limit
# Logs and JSON go to $OUT (the device tool brings that folder back) or /tmp.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python3}
DEST=${OUT:-/tmp}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi failed"
  echo "cpus $(nproc); $("$PY" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)')"
  # each part has a cap, so a slow one cannot take the others' time
  timeout 330 "$PY" benchmarks/gpu_images.py --images 4096 --batch 128 --epochs 3
  echo "gpu_images exit status $?"
  timeout 150 "$PY" benchmarks/lora_speed.py --device cuda --compile --json "$DEST/lora_speed-cuda.json"
  echo "lora_speed exit status $?"
} 2>&1 | tee "$DEST/gpu_session.log"
