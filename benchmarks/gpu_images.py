"""Images per second on a GPU (issue 17): transferkit reading JPEG files against the ceiling.

For each model (default: ``torchvision:resnet50``, the ResNet-50-sized torchvision architecture,
and ``builtin:efficientnet_lite0``; random weights, since nothing is downloaded and the speed
is the same), in one process:

- **ceiling, fine-tuning**: the model on synthetic batches already on the device, bf16
  autocast, channels-last, ``torch.compile``, fused AdamW: forward, cross-entropy, backward,
  step. Images per second over timed steps after warm-up.
- **ceiling, feature extraction**: the backbone's forward alone on the same batches, under
  ``torch.inference_mode``.
- **transferkit fine-tuning**: ``transferkit.train`` with ``--strategy full --precision auto
  --compile`` on a folder of JPEG files written beforehand (``--images`` of ``--jpeg-size``,
  smooth random content at quality 90, as photos compress), default workers and pinned memory.
  Images per second = training images / epoch seconds, for epochs 2 onward (epoch 1 compiles
  and fills the decoded cache), once with the decoded cache (the default) and once with
  ``--decoded-cache-mb 0`` (every epoch decodes every JPEG). Validation is 2% of the images and
  its pass counts against transferkit.
- **transferkit feature extraction**: ``--strategy feature-extraction --compile``; the splits
  are 10% train, 45% validation and 45% test so that the train split's encoding absorbs the
  compilation and the validation and test encodings (from ``train.log``) give the steady rate.
- **input pipeline alone** (no model): transferkit's training loader (workers, pinned memory,
  no decoded cache) moving batches to the device, against reading the files' bytes and decoding
  them on the device (``torchvision.io.decode_jpeg(..., device="cuda")``) with resize and crop
  there: which one feeds the GPU faster.

Targets: transferkit >= 80% of the ceiling for fine-tuning and >= 90% for feature extraction.
Prints a table with the ratios and writes ``benchmarks/results/gpu_images-<device>.json``
(and a copy under ``$OUT`` when set).

Run (GPU): .venv/bin/python benchmarks/gpu_images.py
Smoke run on a CPU (checks the script, not the targets):
    .venv/bin/python benchmarks/gpu_images.py --device cpu --images 96 --batch 16 --steps 3
    --models builtin:efficientnet_lite0 --no-compile
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import transferkit as tk
from transferkit.config import TrainConfig
from transferkit.data import load_data
from transferkit.models import load_model
from transferkit.train.device import loader_workers, prepare_model_layout
from transferkit.train.loaders import make_loader
from transferkit.workflows.progress import read_metrics

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = 8


# -- the JPEG folder ------------------------------------------------------------------------------
def _write_jpeg(args: tuple[Path, int, tuple[int, int]]) -> None:
    path, seed, (height, width) = args
    rng = np.random.default_rng(seed)
    # smooth colour fields plus a little grain: compresses and decodes like a photo, unlike noise
    coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    grain = rng.integers(-12, 13, (height, width, 3))
    pixels = np.clip(np.asarray(image, dtype=np.int16) + grain, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def jpeg_folder(root: Path, images: int, size: tuple[int, int]) -> Path:
    """``images`` JPEG files in ``CLASSES`` class folders (an image-folder dataset)."""
    jobs = []
    for i in range(images):
        folder = root / f"class_{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((folder / f"{i:06d}.jpg", i, size))
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(_write_jpeg, jobs, chunksize=64))
    return root


# -- ceilings -------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_rate(step, batch: int, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - start)


def ceilings(spec: str, batch: int, steps: int, device: torch.device, compile: bool) -> dict[str, float]:
    """Images/s of a training step and of a forward pass on synthetic data on the device."""
    model = load_model(spec, num_classes=CLASSES, pretrained=False).to(device)
    prepare_model_layout(model, "image")  # channels-last, as transferkit trains convolutional models
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, CLASSES, (batch,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    dtype = torch.bfloat16

    def loss_of(inputs, labels):
        with torch.autocast(device.type, dtype=dtype):
            return F.cross_entropy(model(inputs), labels)

    train_loss = torch.compile(loss_of) if compile else loss_of

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        train_loss(x, y).backward()
        optimizer.step()

    model.train()
    train_rate = _timed_rate(train_step, batch, steps, warmup=5, device=device)
    model.eval()
    forward = torch.compile(model.forward_features) if compile else model.forward_features

    @torch.inference_mode()
    def encode_step() -> None:
        with torch.autocast(device.type, dtype=dtype):
            forward(x)

    encode_rate = _timed_rate(encode_step, batch, steps, warmup=5, device=device)
    return {"train": train_rate, "encode": encode_rate}


# -- transferkit on the JPEG folder ---------------------------------------------------------------
def _config(spec: str, folder: Path, out: Path, device: torch.device, batch: int, compile: bool,
            **options: Any) -> TrainConfig:
    return TrainConfig(model=spec, data=str(folder), out=str(out), pretrained=False, device=device.type,
                       precision="auto", compile=compile, batch_size=batch, seed=0,
                       image_size="native", **options)  # the weights' 224 px, as the ceiling


def transferkit_finetune(spec: str, folder: Path, out: Path, device: torch.device, batch: int,
                         epochs: int, compile: bool, decoded_cache_mb: int | None) -> dict[str, Any]:
    """Training images/s of ``--strategy full``, epochs 2 onward (validation counted against it)."""
    options: dict[str, Any] = {} if decoded_cache_mb is None else {"decoded_cache_mb": decoded_cache_mb}
    cfg = _config(spec, folder, out, device, batch, compile, strategy="full", epochs=epochs, patience=epochs,
                  val_fraction=0.02, test_fraction=0.02, **options)
    result = tk.train(cfg)
    n_train = len(load_data(str(folder), seed=0, val_fraction=0.02, test_fraction=0.02).train)
    seconds = [r.seconds for r in read_metrics(result.run_dir) if r.epoch >= 2]
    return {"epoch_seconds": seconds, "train_images": n_train,
            "rate": n_train / statistics.median(seconds) if seconds and n_train else None}


_ENCODED = re.compile(r"encoded (\w+) split: (\d+) examples in ([\d.]+) s")


def _encoded(log: Path) -> dict[str, tuple[int, float]]:
    return {m[1]: (int(m[2]), float(m[3])) for m in _ENCODED.finditer(log.read_text())}


def transferkit_encode(spec: str, folder: Path, out: Path, device: torch.device, batch: int,
                       compile: bool) -> dict[str, Any]:
    """Images/s of feature extraction's encoding of the validation and test splits."""
    cfg = _config(spec, folder, out, device, batch, compile, strategy="feature-extraction",
                  val_fraction=0.45, test_fraction=0.45)
    tk.train(cfg)
    encoded = _encoded(out / "train.log")
    steady = [encoded[s] for s in ("val", "test") if s in encoded]
    images, seconds = sum(n for n, _ in steady), sum(s for _, s in steady)
    return {"encoded": encoded, "rate": images / seconds if seconds else None}


# -- the input pipeline alone ---------------------------------------------------------------------
def loader_rate(spec: str, folder: Path, device: torch.device, batch: int, batches: int) -> float:
    """transferkit's training loader (workers, pinned memory, no decoded cache) to the device."""
    model = load_model(spec, num_classes=CLASSES, pretrained=False)
    split = load_data(str(folder), seed=0).train
    loader = make_loader(model, split, batch_size=batch, train=True, generator=torch.Generator().manual_seed(0),
                         num_workers=loader_workers(None, device), pin_memory=device.type == "cuda")
    iterator, seen = iter(loader), 0
    next(iterator)  # workers started
    batches = min(batches, len(loader) - 1)  # one pass: 4096 images at batch 128 hold 25 train batches
    start = time.perf_counter()
    for _ in range(batches):
        inputs, _ = next(iterator)
        inputs = inputs.to(device, non_blocking=True)
        seen += inputs.shape[0]
    _sync(device)
    return seen / (time.perf_counter() - start)


def device_decode_rate(folder: Path, device: torch.device, batch: int, batches: int) -> float:
    """Read bytes on host threads, decode the JPEGs on the device, resize and crop there."""
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms.v2 import functional as TF

    files = sorted(folder.rglob("*.jpg"))
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    with ThreadPoolExecutor(max_workers=8) as pool:
        def batch_of(i: int) -> list[torch.Tensor]:
            chunk = [files[(i * batch + j) % len(files)] for j in range(batch)]
            return list(pool.map(read_file, map(str, chunk)))

        def step(i: int, data: list[torch.Tensor]) -> None:
            images = decode_jpeg(data, device=device)  # list of (3, H, W) uint8 on the device
            resized = [TF.center_crop(TF.resize(im, 256, antialias=True), 224) for im in images]
            x = (torch.stack(resized).float() / 255 - mean) / std  # (B, 3, 224, 224)
            x.contiguous(memory_format=torch.channels_last)

        step(0, batch_of(0))  # warm-up
        _sync(device)
        start = time.perf_counter()
        pending = pool.submit(batch_of, 1)
        for i in range(1, batches + 1):
            data = pending.result()
            pending = pool.submit(batch_of, i + 1)  # the next batch's bytes while this one decodes
            step(i, data)
        _sync(device)
    return batch * batches / (time.perf_counter() - start)


# -- report ---------------------------------------------------------------------------------------
def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "n/a"


def bench_model(spec: str, folder: Path, work: Path, args: argparse.Namespace, device: torch.device,
                save: Callable[[dict[str, Any]], None]) -> dict:
    """One model's row; each figure is printed and ``save``d as it comes, so a run cut short (a
    lent GPU's minutes are few) still brings back what it measured."""
    compile = not args.no_compile
    name = spec.replace(":", "_")
    row: dict[str, Any] = {"model": spec, "batch": args.batch, "compile": compile}
    c = row["ceiling"] = ceilings(spec, args.batch, args.steps, device, compile)
    print(f"\n{spec} (batch {args.batch}, compile {compile})")
    print(f"  ceiling: train {c['train']:8.1f} img/s   encode {c['encode']:8.1f} img/s", flush=True)
    save(row)
    runs = (("finetune_cached", "fine-tune, decoded cache", c["train"],
             lambda: transferkit_finetune(spec, folder, work / f"{name}-ft", device, args.batch, args.epochs,
                                          compile, None)),
            ("finetune_jpeg", "fine-tune, JPEG each epoch", c["train"],
             lambda: transferkit_finetune(spec, folder, work / f"{name}-ft-jpeg", device, args.batch,
                                          args.epochs, compile, 0)),
            ("encode", "feature extraction", c["encode"],
             lambda: transferkit_encode(spec, folder, work / f"{name}-fe", device, args.batch, compile)))
    for key, label, ceiling, measure in runs:
        row[key] = measure()
        rate = row[key]["rate"]
        shown = f"{rate:8.1f}" if rate else "     n/a"
        print(f"  {label:28s} {shown} img/s  = {_ratio(rate, ceiling)} of the ceiling", flush=True)
        save(row)
    row["input_loader"] = loader_rate(spec, folder, device, args.batch, args.steps)
    row["input_device_decode"] = device_decode_rate(folder, device, args.batch, args.steps)
    print(f"  input alone: loader {row['input_loader']:.1f} img/s, "
          f"decode on the device {row['input_device_decode']:.1f} img/s", flush=True)
    save(row)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", default="torchvision:resnet50,builtin:efficientnet_lite0")
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--jpeg-size", default="375x500", help="HEIGHTxWIDTH of the JPEG files")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="timed steps of the ceilings and input pipelines")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    height, width = (int(v) for v in args.jpeg_size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="gpu_images-"))
    try:
        started = time.perf_counter()
        folder = jpeg_folder(work / "jpeg", args.images, (height, width))
        print(f"{args.images} JPEG files of {height}x{width} written in {time.perf_counter() - started:.1f} s")
        header = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                  "cpus": os.cpu_count(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
                  "args": vars(args)}
        rows: list[dict[str, Any]] = []
        for spec in args.models.split(","):  # the first model first: a run cut short keeps its row
            done = list(rows)
            rows.append(bench_model(spec, folder, work, args, device,
                                    lambda row: _write({"header": header, "rows": [*done, row]}, device)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write(results: dict[str, Any], device: torch.device) -> None:
    text = json.dumps(results, indent=2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"gpu_images-{device.type}.json").write_text(text)
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / f"gpu_images-{device.type}.json").write_text(text)


if __name__ == "__main__":
    main()
