"""The shipped prior (builtin:drunet) restores held-out images better than the degraded input and
than total variation in the same solver (issue 15's integration check).

Images: the centre 128x128 crops of scikit-image's camera (grey) and astronaut (colour), both in
the held-out set ``transferkit-heldout`` (natural_images.HELD_OUT), never seen in pre-training.
Problems: Gaussian blur sigma 1.6 with noise 0.01 (HQS, DPIR schedule, 8 iterations) and denoising
at sigma 25/255 (one denoiser call), simulated with seed 0.

Measured on the final shipped weights (PSNR, dB), and the thresholds a little below:

    image      task     input  drunet  tv     gain over input (min)  gain over tv (min)
    camera     deblur   24.29  28.79   28.09  4.50 (4.2)             0.70 (0.55)
    camera     denoise  21.11  28.75   28.23  7.64 (7.3)             0.52 (0.4)
    astronaut  deblur   24.52  28.01   27.46  3.49 (3.2)             0.55 (0.4)
    astronaut  denoise  21.21  28.32   27.27  7.10 (6.8)             1.04 (0.9)

(weights written by scripts/pretrain_denoiser.py after 9000 steps.) The problems are seeded, so the
numbers move only with the weights or the numerical libraries; the margins absorb the latter.
"""

from __future__ import annotations

import pytest
import torch

from transferkit.restore import (
    Degradation,
    RestoreOptions,
    load_prior,
    natural_images,
    restore_tensor,
)

pytestmark = pytest.mark.integration

SIZE = 128
PROBLEMS = {
    "deblur": Degradation("deblur", kernel="gaussian:1.6", noise_sigma=0.01),
    "denoise": Degradation("denoise", noise_sigma=25 / 255),
}
# (image, task) -> (minimum gain over the input, minimum gain over tv), in dB: a little below what
# the final weights measure (see the module docstring).
THRESHOLDS = {
    ("skimage:camera", "deblur"): (4.2, 0.55),
    ("skimage:camera", "denoise"): (7.3, 0.4),
    ("skimage:astronaut", "deblur"): (3.2, 0.4),
    ("skimage:astronaut", "denoise"): (6.8, 0.9),
}


@pytest.fixture(scope="module")
def priors():
    return {name: load_prior(name) for name in ("builtin:drunet", "tv")}


def centre_crop(name: str) -> torch.Tensor:
    assert name in natural_images.HELD_OUT
    image = natural_images.load_named(name)
    top, left = (image.shape[-2] - SIZE) // 2, (image.shape[-1] - SIZE) // 2
    return image[None, :, top:top + SIZE, left:left + SIZE].contiguous()


@pytest.mark.parametrize(("image", "task"), list(THRESHOLDS), ids=lambda value: str(value).split(":")[-1])
def test_builtin_prior_beats_the_input_and_total_variation(priors, image, task):
    clean = centre_crop(image)
    assert clean.shape[1] == (1 if image == "skimage:camera" else 3)
    results = {name: restore_tensor(clean, RestoreOptions(PROBLEMS[task], prior=name), simulate=True, prior=prior)
               for name, prior in priors.items()}
    drunet, tv = results["builtin:drunet"], results["tv"]
    assert drunet.image.shape == clean.shape
    assert drunet.psnr_input == tv.psnr_input  # the same simulated problem
    over_input, over_tv = THRESHOLDS[(image, task)]
    measured = (f"{image} {task}: input {drunet.psnr_input:.2f}, drunet {drunet.psnr:.2f}, tv {tv.psnr:.2f} dB; "
                f"SSIM {drunet.ssim_input:.3f} -> {drunet.ssim:.3f}")
    assert drunet.psnr - drunet.psnr_input >= over_input, measured
    assert drunet.psnr - tv.psnr >= over_tv, measured
    assert drunet.ssim > drunet.ssim_input, measured
