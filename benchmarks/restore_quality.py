"""What each prior is worth: PSNR on the held-out set ``transferkit-heldout`` (images never used to
pre-train the built-in denoiser; see ``transferkit.restore.natural_images``), grey and colour.

- Denoising at sigma 15, 25 and 50/255: builtin:drunet against non-local means, total variation,
  wavelet soft-thresholding (and BM3D when installed).
- Deblurring (Gaussian sigma 1.6 and motion 15 px at 30 degrees, noise 0.01) and super-resolution
  x2 (bicubic, noise 0.01): builtin:drunet against total variation in the same solver (HQS, DPIR
  schedule), and the degraded input.

Each image is a centre crop (``--crop``, default 256) so the run takes minutes on a CPU; noise and
masks come from a fixed seed. Usage::

    .venv/bin/python benchmarks/restore_quality.py --json benchmarks/results/restore_quality.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time

import torch

from transferkit.restore import (
    Degradation,
    RestoreOptions,
    load_prior,
    natural_images,
    restore_tensor,
)


def centre_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    _, height, width = image.shape
    top, left = max((height - size) // 2, 0), max((width - size) // 2, 0)
    return image[None, :, top:top + size, left:left + size]


def mean_psnr(crops: dict[str, torch.Tensor], degradation: Degradation, prior, solver: str = "hqs") -> tuple[float, float, float]:
    """Mean PSNR of the degraded input and of the restoration, and mean seconds, over the crops."""
    inputs, outputs, seconds = [], [], []
    for image in crops.values():
        result = restore_tensor(image, RestoreOptions(degradation, prior=prior.name, solver=solver), simulate=True, prior=prior)
        inputs.append(result.psnr_input)
        outputs.append(result.psnr)
        seconds.append(result.seconds)
    return statistics.fmean(inputs), statistics.fmean(outputs), statistics.fmean(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sets = {"grey": natural_images.load_set(natural_images.HELD_OUT_GREY),
            "colour": natural_images.load_set(natural_images.HELD_OUT_COLOUR)}
    crops = {kind: {name: centre_crop(image, args.crop) for name, image in images.items()} for kind, images in sets.items()}
    for kind, named in crops.items():
        print(f"{kind}: {', '.join(named)}")
    classical = ["nlm", "tv", "wavelet"] + (["bm3d"] if importlib.util.find_spec("bm3d") else [])
    priors = {name: load_prior(name) for name in ["builtin:drunet", *classical]}
    rows = []
    started = time.perf_counter()
    print("\n| problem | set | input | " + " | ".join(priors) + " |")
    print("|---|---|---:|" + "---:|" * len(priors))
    problems = [(f"denoise sigma {s}/255", Degradation("denoise", noise_sigma=s / 255), list(priors)) for s in (15, 25, 50)]
    problems += [("deblur gaussian 1.6, noise 0.01", Degradation("deblur", kernel="gaussian:1.6", noise_sigma=0.01), ["builtin:drunet", "tv"]),
                 ("deblur motion 15 px 30 deg, noise 0.01", Degradation("deblur", kernel="motion:15,30", noise_sigma=0.01), ["builtin:drunet", "tv"]),
                 ("super-resolve x2, noise 0.01", Degradation("super-resolve", scale=2, noise_sigma=0.01), ["builtin:drunet", "tv"])]
    for label, degradation, names in problems:
        for kind, named in crops.items():
            row = {"problem": label, "set": kind, "images": list(named)}
            for name in names:
                psnr_input, psnr, seconds = mean_psnr(named, degradation, priors[name])
                row["input"] = psnr_input
                row[name] = psnr
                row[f"{name} seconds"] = seconds
            rows.append(row)
            cells = [f"{row[name]:.2f}" if name in row else "" for name in priors]
            print(f"| {label} | {kind} | {row['input']:.2f} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n{time.perf_counter() - started:.0f} s; {torch.get_num_threads()} torch threads; crops {args.crop} px")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"crop": args.crop, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
