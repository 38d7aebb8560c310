"""Feature extraction with the frozen backbone: eager torch against ``--backend onnxruntime``.

For a few hundred images (``builtin:digits`` through ``builtin:efficientnet_lite0``) and texts
(``builtin:bbc-news`` through ``builtin:minilm``), in one process on the same batches, each
repeat running the three in turn (interleaved, so a change of load hits all of them):

- torch: ``extract_features`` as the trainer runs it (channels-last images, batches of 8; texts
  in length-sorted batches of 32, padded to the batch's longest);
- onnxruntime engine: the backbone exported once (``OnnxBackbone``, the export timed apart), then
  the same batches through ONNX Runtime;
- ``--backend onnxruntime`` as the trainer runs it: export, the engines timed on the first batch,
  the faster one encoding (``onnxruntime_backend``), all of it timed.

Batches are decoded and tokenized once beforehand, so every side times only the backbone.
Prints median seconds, the ratios to torch and the smallest cosine similarity between the torch
and ONNX Runtime feature matrices, with the load average before and after; writes
``benchmarks/results/feature_backend-cpu.{json,md}``. Target: >= 1.3x, cosine >= 0.9999.

Run: .venv/bin/python benchmarks/feature_backend.py [--images 300] [--texts 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from transferkit.data import Split, load_data
from transferkit.export.features import OnnxBackbone, onnxruntime_backend
from transferkit.models import load_model
from transferkit.train.device import inference_batch_size, prepare_model_layout
from transferkit.train.features import extract_features
from transferkit.train.loaders import make_indexed_loader

RESULTS = Path(__file__).parent / "results"


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


def bench(name: str, model_spec: str, data_spec: str, n: int, repeats: int) -> dict:
    model, batches, count = batches_of(model_spec, data_spec, n)
    cpu = torch.device("cpu")
    runs: dict[str, list[float]] = {"torch": [], "onnxruntime": [], "export": [], "backend": []}
    picks = []
    for _ in range(repeats):
        seconds, eager = timed(lambda: extract_features(model, batches, count, cpu))
        runs["torch"].append(seconds)
        seconds, backbone = timed(lambda: OnnxBackbone(model, batches[0][0]))
        runs["export"].append(seconds)
        seconds, onnx = timed(lambda: extract_features(model, batches, count, cpu, encode=backbone))
        runs["onnxruntime"].append(seconds)
        seconds, _ = timed(lambda: picks.append(onnxruntime_backend(model, batches, cpu)) or
                           extract_features(model, batches, count, cpu, encode=picks[-1]))
        runs["backend"].append(seconds)
    t, o, e, b = (statistics.median(runs[k]) for k in ("torch", "onnxruntime", "export", "backend"))
    row = {"name": name, "examples": count, "batches": [_shape(x[0]) for x in batches[:2]],
           "median_s": {"torch": t, "onnxruntime": o, "export": e, "backend": b},
           "runs_s": runs, "backend_chose": ["onnxruntime" if p is not None else "torch" for p in picks],
           "ratio_extraction": t / o, "ratio_with_export": t / (o + e), "ratio_backend": t / b,
           "min_cosine": float(F.cosine_similarity(eager.features, onnx.features, dim=1).min())}
    print(f"{name}: {count} examples, features {tuple(eager.features.shape)}, first batch {row['batches'][0]}")
    print(f"  torch eager            {t:7.2f} s  ({count / t:6.1f} /s)")
    print(f"  onnxruntime engine     {o:7.2f} s  ({count / o:6.1f} /s)   + export {e:.2f} s")
    print(f"  --backend onnxruntime  {b:7.2f} s  (export, timing, then {', '.join(row['backend_chose'])})")
    print(f"  ratio torch/onnxruntime: {t / o:.2f}x extraction only, {t / (o + e):.2f}x with the export, "
          f"{t / b:.2f}x the backend end to end; min cosine similarity {row['min_cosine']:.6f}")
    return row


def _shape(inputs) -> list[int]:
    return list(inputs.shape) if isinstance(inputs, torch.Tensor) else list(inputs["input_ids"].shape)


def write(rows: list[dict], header: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "feature_backend-cpu.json").write_text(json.dumps({**header, "rows": rows}, indent=1) + "\n")
    lines = [f"# feature_backend ({header['conditions']})", "",
             "| model | torch s | ORT engine s | export s | --backend onnxruntime s (chose) | engine x | with export x "
             "| backend x | min cosine |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["median_s"]
        lines.append(f"| {r['name']} | {m['torch']:.2f} | {m['onnxruntime']:.2f} | {m['export']:.2f} | "
                     f"{m['backend']:.2f} ({', '.join(r['backend_chose'])}) | {r['ratio_extraction']:.2f} | "
                     f"{r['ratio_with_export']:.2f} | {r['ratio_backend']:.2f} | {r['min_cosine']:.6f} |")
    (RESULTS / "feature_backend-cpu.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["images", "texts"], default=None)
    args = parser.parse_args()
    before = os.getloadavg()
    versions = (f"torch {torch.__version__}, {torch.get_num_threads()} threads; onnxruntime "
                f"{__import__('onnxruntime').__version__}; {os.cpu_count()} CPUs")
    print(f"{versions}; medians of {args.repeats}; load average {before[0]:.2f} (1 min) at the start")
    rows = []
    if args.only in (None, "images"):
        rows.append(bench("builtin:efficientnet_lite0 on builtin:digits", "builtin:efficientnet_lite0",
                          "builtin:digits", args.images, args.repeats))
    if args.only in (None, "texts"):
        rows.append(bench("builtin:minilm on builtin:bbc-news", "builtin:minilm", "builtin:bbc-news",
                          args.texts, args.repeats))
    after = os.getloadavg()
    conditions = (f"{versions}; medians of {args.repeats} interleaved repeats; 1-minute load average "
                  f"{before[0]:.2f} at the start, {after[0]:.2f} at the end")
    print(conditions)
    write(rows, {"conditions": conditions, "load_1min": [before[0], after[0]]})


if __name__ == "__main__":
    main()
