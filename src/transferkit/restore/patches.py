"""Training patches for denoisers: random crops with flips, quarter turns and grey conversion, and
Gaussian noise with a per-patch level. Shared by pre-training (``scripts/pretrain_denoiser.py``)
and fine-tuning on the user's images (``transferkit denoiser train``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: The noise range the denoisers are trained on (0-1 scale): DPIR's schedule starts at 49/255.
MAX_SIGMA = 50 / 255


def image_pyramid(images: list[torch.Tensor], scales: tuple[float, ...] = (1.0, 0.75, 0.5)) -> list[torch.Tensor]:
    """Each [C, H, W] image at each scale (antialiased): more texture sizes from few images."""
    pyramid = []
    for image in images:
        for scale in scales:
            size = (max(int(image.shape[1] * scale), 8), max(int(image.shape[2] * scale), 8))
            scaled = image if scale == 1.0 else F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0]
            pyramid.append(scaled.clamp(0, 1))
    return pyramid


def sampling_weights(pyramid: list[torch.Tensor]) -> torch.Tensor:
    """Pick an image with probability proportional to the square root of its area: large images
    give more crops without drowning the small ones."""
    return torch.tensor([math.sqrt(p.shape[1] * p.shape[2]) for p in pyramid])


def sample_batch(pyramid: list[torch.Tensor], weights: torch.Tensor, batch: int, patch: int,
                 generator: torch.Generator, channels: int = 3, grey_probability: float = 0.25) -> torch.Tensor:
    """[batch, channels, patch, patch] clean crops with flips, quarter turns and (for 3 channels)
    grey conversion: a grey crop is three equal channels, as grey images are denoised."""
    crops = []
    for index in torch.multinomial(weights, batch, replacement=True, generator=generator).tolist():
        image = pyramid[index]
        if image.shape[1] < patch or image.shape[2] < patch:  # too small: upscale to fit one crop
            size = (max(patch, image.shape[1]), max(patch, image.shape[2]))
            image = F.interpolate(image[None], size=size, mode="bilinear")[0]
        top = int(torch.randint(0, image.shape[1] - patch + 1, (1,), generator=generator))
        left = int(torch.randint(0, image.shape[2] - patch + 1, (1,), generator=generator))
        crop = image[:, top:top + patch, left:left + patch]
        if crop.shape[0] != channels or (channels == 3 and torch.rand(1, generator=generator) < grey_probability):
            crop = crop.mean(0, keepdim=True).expand(channels, -1, -1)
        if torch.rand(1, generator=generator) < 0.5:
            crop = crop.flip(2)
        crop = torch.rot90(crop, int(torch.randint(0, 4, (1,), generator=generator)), dims=(1, 2))
        crops.append(crop)
    return torch.stack(crops).contiguous()


def add_noise(clean: torch.Tensor, generator: torch.Generator, max_sigma: float = MAX_SIGMA,
              low_share: float = 0.0, low_max: float = 10 / 255) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy batch and each patch's sigma [B, 1, 1, 1], uniform in [0, max_sigma]; with
    ``low_share`` > 0 that share of patches draws it from [0, low_max] instead (a denoiser inside a
    solver is called many times at low levels, where it must be close to the identity). A patch
    whose channels are equal (grey) gets the same noise in each channel."""
    sigma = torch.rand(clean.shape[0], 1, 1, 1, generator=generator) * max_sigma
    noise = torch.randn(clean.shape, generator=generator)
    if low_share > 0:
        low = torch.rand(clean.shape[0], 1, 1, 1, generator=generator) < low_share
        sigma = torch.where(low, sigma / max_sigma * low_max, sigma)
    grey = (clean == clean[:, :1]).flatten(1).all(dim=1)
    noise[grey] = noise[grey][:, :1].expand(-1, clean.shape[1], -1, -1)
    return clean + sigma * noise, sigma


def psnr_on_crops(model: torch.nn.Module, pyramid: list[torch.Tensor], sigma: float, channels: int = 3,
                  crops: int = 8, patch: int = 128, seed: int = 1234) -> float:
    """Mean PSNR (dB) of ``model`` at noise ``sigma`` on fixed crops: a progress figure."""
    generator = torch.Generator().manual_seed(seed)
    clean = sample_batch(pyramid, torch.ones(len(pyramid)), crops, patch, generator, channels)
    noisy = clean + sigma * torch.randn(clean.shape, generator=generator)
    with torch.no_grad():
        out = model(noisy, sigma).clamp(0, 1)
    mse = ((out - clean) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return float((10 * torch.log10(1 / mse)).mean())
