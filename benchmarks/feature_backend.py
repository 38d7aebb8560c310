"""Feature extraction with the frozen backbone: eager torch against ``--backend onnxruntime``.

For a few hundred images (``builtin:digits`` through ``builtin:efficientnet_lite0``) and texts
(``builtin:bbc-news`` through ``builtin:minilm``), in one process on the same batches:

- torch: ``extract_features`` as the trainer runs it (channels-last images, batches of 8; texts
  in length-sorted batches of 32);
- onnxruntime: the backbone exported once (``OnnxBackbone``, the time counted), then the same
  batches through ONNX Runtime.

Batches are decoded and tokenized once beforehand, so both sides time only the backbone.
Prints median seconds, the ratio torch / onnxruntime (with and without the export) and the
smallest cosine similarity between the two feature matrices. Target: >= 1.3x, cosine >= 0.9999.

Run: .venv/bin/python benchmarks/feature_backend.py [--images 300] [--texts 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from transferkit.data import Split, load_data
from transferkit.export.features import OnnxBackbone
from transferkit.models import load_model
from transferkit.train.device import inference_batch_size, prepare_model_layout
from transferkit.train.features import extract_features
from transferkit.train.loaders import make_indexed_loader


def batches_of(model_spec: str, data_spec: str, n: int) -> tuple[torch.nn.Module, list, int]:
    """The model and ``n`` examples as pre-collated ``(inputs, labels, indices)`` batches."""
    data = load_data(data_spec, seed=0)
    pool = Split(data.train.items[:n], data.train.labels[:n])
    model = load_model(model_spec, num_classes=len(data.classes)).eval()
    prepare_model_layout(model, model.spec.modality)
    size = inference_batch_size(32, torch.device("cpu"), model.spec.modality)
    return model, list(make_indexed_loader(model, pool, batch_size=size)), len(pool)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench(name: str, model_spec: str, data_spec: str, n: int, repeats: int) -> None:
    model, batches, count = batches_of(model_spec, data_spec, n)
    cpu = torch.device("cpu")
    torch_s, onnx_s, export_s = [], [], []
    for _ in range(repeats):
        seconds, eager = timed(lambda: extract_features(model, batches, count, cpu))
        torch_s.append(seconds)
        seconds, backbone = timed(lambda: OnnxBackbone(model, batches[0][0]))
        export_s.append(seconds)
        seconds, onnx = timed(lambda: extract_features(model, batches, count, cpu, encode=backbone))
        onnx_s.append(seconds)
    cosine = float(F.cosine_similarity(eager.features, onnx.features, dim=1).min())
    t, o, e = (statistics.median(v) for v in (torch_s, onnx_s, export_s))
    print(f"{name}: {count} examples, features {tuple(eager.features.shape)}")
    print(f"  torch eager            {t:7.2f} s  ({count / t:6.1f} /s)")
    print(f"  onnxruntime            {o:7.2f} s  ({count / o:6.1f} /s)   + export {e:.2f} s")
    print(f"  ratio torch/onnxruntime: {t / o:.2f}x extraction only, {t / (o + e):.2f}x with the export; "
          f"min cosine similarity {cosine:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; onnxruntime "
          f"{__import__('onnxruntime').__version__}; medians of {args.repeats}")
    bench("images (builtin:efficientnet_lite0, builtin:digits)", "builtin:efficientnet_lite0", "builtin:digits",
          args.images, args.repeats)
    bench("texts (builtin:minilm, builtin:bbc-news)", "builtin:minilm", "builtin:bbc-news", args.texts, args.repeats)


if __name__ == "__main__":
    main()
