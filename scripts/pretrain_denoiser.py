"""Pre-train transferkit's built-in DRUNet denoiser (``builtin:drunet``) on images that ship offline.

Data: the scikit-image sample images that need no download and the Debian ``opencv-doc`` example
photographs listed in ``transferkit.restore.natural_images`` (never its held-out set,
``transferkit-heldout``). Each step draws ``--batch-size`` random ``--patch`` crops: an image chosen
with probability proportional to the square root of its area, a random scale in [0.5, 1], a random
flip and quarter turn; a colour image is turned grey with probability 0.25 (grey images are three
equal channels with the same noise in each, which is how the model denoises grey images). Noise:
Gaussian, sigma uniform in [0, 50]/255 per patch, given to the network as its noise-level map.
Loss L1 (as DRUNet), Adam, learning rate cosine-decayed from ``--lr`` to 1% of it.

The shipped weights took two stages (about 25 and 11 minutes on two quiet CPU cores; the
record of both is in ``drunet_small.json``)::

    .venv/bin/python scripts/pretrain_denoiser.py --steps 9000 --seed 0 --out /tmp/stage1.safetensors
    .venv/bin/python scripts/pretrain_denoiser.py --init /tmp/stage1.safetensors --steps 4000 \
        --lr 3e-4 --low-noise-share 0.5 --seed 1

The second stage draws half of the noise levels from [0, 10/255]: inside a solver the denoiser is
called many times at low levels, where it must be close to the identity (after the first stage it
changed a clean image by 36 dB PSNR at sigma 0, and super-resolution drifted below bicubic).

It writes ``src/transferkit/restore/weights/drunet_small.safetensors`` and, beside it,
``drunet_small.json``: the settings, the machine, the time taken and the loss curve.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from transferkit.io.atomic import atomic_save_weights, atomic_write_json
from transferkit.restore import drunet, natural_images, patches


def load_training_pyramid() -> list[torch.Tensor]:
    """Every training image at scales 1, 0.75 and 0.5."""
    images = natural_images.load_set(natural_images.training_names())
    print(f"{len(images)} training images: {', '.join(images)}")
    return patches.image_pyramid(list(images.values()))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=9000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=drunet.BUILTIN_WEIGHTS)
    parser.add_argument("--init", type=Path, help="start from these weights (a second stage) instead of at random")
    parser.add_argument("--low-noise-share", type=float, default=0.0,
                        help="share of patches whose sigma is drawn from [0, 10/255] instead of [0, 50/255]")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where to train (default: CUDA when present); patches are drawn on the CPU")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    pyramid = load_training_pyramid()
    weights = patches.sampling_weights(pyramid)
    model = drunet.BUILTIN_SHAPE.build()
    if args.init is not None:
        previous = load_file(str(args.init))
        model.load_state_dict(previous)
    model = model.to(args.device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps, eta_min=args.lr / 100)
    curve, started, running, count = [], time.perf_counter(), 0.0, 0
    for step in range(1, args.steps + 1):
        clean = patches.sample_batch(pyramid, weights, args.batch_size, args.patch, generator)
        noisy, sigma = patches.add_noise(clean, generator, low_share=args.low_noise_share)
        noisy, sigma, clean = (t.to(args.device) for t in (noisy, sigma, clean))
        loss = F.l1_loss(model(noisy.contiguous(memory_format=torch.channels_last), sigma), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running, count = running + float(loss.detach()), count + 1
        if step % 500 == 0 or step == args.steps:
            model.eval()
            psnr = patches.psnr_on_crops(model.cpu(), pyramid, 25 / 255)
            model.to(args.device)
            model.train()
            elapsed = time.perf_counter() - started
            curve.append({"step": step, "l1": running / count, "psnr_sigma25_train_crops": round(psnr, 3),
                          "seconds": round(elapsed, 1)})
            print(json.dumps(curve[-1]), flush=True)
            running, count = 0.0, 0
            atomic_save_weights(args.out, model.state_dict())  # a usable checkpoint all along (saved on CPU)
    record = {
        "architecture": {"channels": drunet.BUILTIN_SHAPE.channels, "widths": list(drunet.BUILTIN_SHAPE.widths),
                         "blocks": drunet.BUILTIN_SHAPE.blocks},
        "settings": {k: (v.name if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "noise_sigma_range": [0, patches.MAX_SIGMA], "loss": "l1", "optimizer": "adam, cosine to lr/100",
        "images": natural_images.training_names(), "held_out": list(natural_images.HELD_OUT),
        "machine": f"{_cpu_name()}, {torch.get_num_threads()} torch threads, "
                   + (torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"),
        "torch": torch.__version__, "seconds": round(time.perf_counter() - started, 1), "curve": curve,
    }
    previous = args.init.with_suffix(".json") if args.init is not None else None
    if previous is not None and previous.is_file():
        record["previous_stage"] = json.loads(previous.read_text(encoding="utf-8"))
    atomic_save_weights(args.out, model.state_dict())
    atomic_write_json(args.out.with_suffix(".json"), record)
    print(f"wrote {args.out} after {record['seconds']} s")


if __name__ == "__main__":
    main()
