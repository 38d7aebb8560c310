"""Seconds per restoration of a 256x256 image (deblurring, Gaussian sigma 1.6, noise 0.01, 8 HQS
iterations) for each prior, on the CPU (and CUDA when present), beside deepinv's own ``DPIR`` with
the same DRUNet weights on the same circular-blur problem. Medians over interleaved repetitions,
and the ratio transferkit / deepinv (below 1: transferkit faster).

transferkit's deblurring also pads the image by the kernel's size and tapers its edges (so real
photographs, not only circularly blurred ones, restore without ringing); the row "drunet, same
problem as deepinv" runs transferkit's solver on deepinv's exact problem to compare like with like.

Usage::

    .venv/bin/python benchmarks/restore_speed.py --repeats 5
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time

import torch

from transferkit.restore import (
    Degradation,
    RestoreOptions,
    load_prior,
    natural_images,
    restore_tensor,
    solve,
)
from transferkit.restore import physics as ph


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    import deepinv

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    image = natural_images.load_named("skimage:astronaut")[None, :, 100:100 + args.size, 150:150 + args.size]
    degradation = Degradation("deblur", kernel="gaussian:1.6", noise_sigma=0.01)
    options = RestoreOptions(degradation, iterations=8)
    classical = ["tv", "wavelet", "nlm"] + (["bm3d"] if importlib.util.find_spec("bm3d") else [])
    for device in devices:
        drunet = load_prior("builtin:drunet")
        drunet.network.to(device)
        x = image.to(device)
        kernel = ph.parse_kernel(degradation.kernel).to(device)
        physics = ph.blur_operator(kernel, tuple(x.shape[1:])).to(device)
        y = physics.A(x) + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(device)
        theirs = deepinv.optim.DPIR(sigma=0.01, denoiser=drunet.network, device=device)
        cases = {
            "drunet (transferkit restore)": lambda: restore_tensor(x.cpu(), options, simulate=True, prior=drunet),
            "drunet, same problem as deepinv": lambda: solve(y, physics, drunet, noise_sigma=0.01, iterations=8),
            "deepinv DPIR, same weights": lambda: theirs(y, physics),
        }
        if device == "cpu":
            for name in classical:
                prior = load_prior(name)
                cases[f"{name} (transferkit restore)"] = lambda prior=prior: restore_tensor(x, options, simulate=True, prior=prior)
        with torch.no_grad():
            for function in cases.values():  # warm-up
                function()
            times: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(args.repeats):  # interleaved: drift hits every case alike
                for name, function in cases.items():
                    if device == "cuda":
                        torch.cuda.synchronize()
                    times[name].append(timed(function))
        reference = statistics.median(times["deepinv DPIR, same weights"])
        print(f"\n{device}, {args.size}x{args.size} colour, {torch.get_num_threads()} threads, medians of {args.repeats}")
        print("| case | seconds | / deepinv DPIR |\n|---|---:|---:|")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"| {name} | {median:.3f} | {median / reference:.2f} |")


if __name__ == "__main__":
    main()
