"""An inverse problem ready for the solver: the measurement, the operator on the solver's domain,
a starting image, and how to cut the answer out of that domain.

Two ways in: :func:`simulate` degrades a clean image with a fixed seed (``--simulate``), and
:func:`from_measurement` takes an image that is already degraded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from transferkit.errors import ConfigError

from . import physics as ph

#: Denoiser calls per task when --iterations is not given (DPIR uses 8 for deblurring). Chosen on
#: 128-px crops of six pre-training images (never the held-out set), noise 0.01: deblurring
#: 8 > 16 > 24 iterations; super-resolution x2 34.62, 34.63, 34.42, 34.18 dB at 4, 8, 16, 24.
DEFAULT_ITERATIONS = {"denoise": 1, "deblur": 8, "super-resolve": 8, "inpaint": 24}


@dataclass
class Problem:
    """y = A x + noise on the solver's domain [1, C, H + 2m, W + 2m] (m: ``margin``)."""

    measurement: torch.Tensor  # y, as the solver sees it (blur: reflect-padded by the margin)
    operator: object  # a deepinv LinearPhysics on the domain
    init: torch.Tensor  # the starting image on the domain
    margin: int  # pixels to cut from each side of the solver's answer
    degraded: torch.Tensor  # what the user has, at the output's size (for display and PSNR)
    noise_sigma: float

    def crop(self, image: torch.Tensor) -> torch.Tensor:
        m = self.margin
        return image[..., m:image.shape[-2] - m, m:image.shape[-1] - m] if m else image


def simulate(clean: torch.Tensor, degradation: ph.Degradation, seed: int = 0) -> Problem:
    """Degrade a clean [1, C, H, W] image as ``degradation`` says (noise drawn from ``seed``), and
    return the problem of undoing it."""
    generator = torch.Generator().manual_seed(seed)
    _, channels, height, width = clean.shape
    sigma = degradation.sigma

    def noise(shape: torch.Size) -> torch.Tensor:
        return sigma * torch.randn(shape, generator=generator)

    if degradation.task == "denoise":
        return from_measurement(clean + noise(clean.shape), degradation)
    if degradation.task == "deblur":
        kernel = ph.parse_kernel(degradation.kernel)
        ph.check_kernel_fits(kernel, height, width)
        blurred = ph.blur_for_simulation(kernel).A(clean)
        return from_measurement(blurred + noise(blurred.shape), degradation, kernel=kernel)
    if degradation.task == "super-resolve":
        ph.check_scale_divides(degradation.scale, height, width)
        small = ph.downsampling_operator(degradation.scale, (channels, height, width)).A(clean)
        return from_measurement(small + noise(small.shape), degradation)
    if degradation.mask is not None:
        mask = ph.read_mask(degradation.mask, height, width)
    else:
        mask = ph.random_mask(height, width, degradation.mask_ratio or ph.DEFAULT_MASK_RATIO, generator)
    return _inpainting(mask * (clean + noise(clean.shape)), mask, sigma)


def from_measurement(y: torch.Tensor, degradation: ph.Degradation, kernel: torch.Tensor | None = None) -> Problem:
    """The problem of restoring an already degraded [1, C, h, w] image."""
    _, channels, height, width = y.shape
    sigma = degradation.sigma
    if degradation.task == "denoise":
        return Problem(y, ph.denoise_operator(), y, 0, y, sigma)
    if degradation.task == "deblur":
        kernel = ph.parse_kernel(degradation.kernel) if kernel is None else kernel
        ph.check_kernel_fits(kernel, height, width)
        margin = ph.reflect_margin(kernel)
        padded = ph.pad_reflect(y, margin)
        operator = ph.blur_operator(kernel, tuple(padded.shape[1:]))
        padded = ph.edge_taper(padded, operator, margin)
        return Problem(padded, operator, operator.A_adjoint(padded), margin, y, sigma)
    if degradation.task == "super-resolve":
        scale = degradation.scale
        operator = ph.downsampling_operator(scale, (channels, height * scale, width * scale))
        upsampled = F.interpolate(y, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
        return Problem(y, operator, upsampled, 0, upsampled, sigma)
    if degradation.mask is None:
        raise ConfigError(
            "Inpainting an image needs --mask FILE.png (white = known pixel, black = to fill in). "
            "--mask-ratio removes random pixels and works only with --simulate."
        )
    mask = ph.read_mask(degradation.mask, height, width)
    return _inpainting(y * mask, mask, sigma)


def _inpainting(y: torch.Tensor, mask: torch.Tensor, sigma: float) -> Problem:
    operator = ph.inpaint_operator(mask, tuple(y.shape[1:]))
    return Problem(y, operator, fill_holes(y, mask), 0, y, sigma)


def fill_holes(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fill unknown pixels with a normalised Gaussian average of known ones at growing widths:
    a smooth start, so the first denoising step does not have to invent holes from black."""
    from deepinv.physics.functional import gaussian_blur

    filled, known = image * mask, mask.expand_as(image).clone()
    width = 1.0
    while bool((known < 1).any()) and width <= max(image.shape[-2:]):
        kernel = gaussian_blur(sigma=(width, width)).to(image)
        size = kernel.shape[-1]
        if size >= min(image.shape[-2:]):
            break
        weight = kernel.expand(image.shape[1], 1, -1, -1)
        pad = (size // 2,) * 4
        numerator = F.conv2d(F.pad(filled * known, pad, mode="reflect"), weight, groups=image.shape[1])
        denominator = F.conv2d(F.pad(known, pad, mode="reflect"), weight, groups=image.shape[1])
        reached = (denominator > 1e-3) & (known < 1)
        filled = torch.where(reached, numerator / denominator.clamp_min(1e-3), filled)
        known = torch.where(reached, torch.ones_like(known), known)
        width *= 2
    mean = (image * mask).sum(dim=(-2, -1), keepdim=True) / mask.sum().clamp_min(1)
    return torch.where(known < 1, mean.expand_as(filled), filled)
