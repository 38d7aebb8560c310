"""Priors for plug-and-play restoration: a denoiser ``D(x, sigma)`` the solver calls at a
decreasing noise level. Pre-trained DRUNets (built-in, official weights, fine-tuned runs) and
classical denoisers for comparison (total variation, wavelet soft-thresholding, non-local means,
BM3D when its package is installed).

Every prior maps [B, C, H, W] float images (C = 1 or 3, roughly in [0, 1]) and a noise level on the
0-1 scale to a denoised image of the same shape.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from transferkit.errors import ConfigError, WeightsUnavailableError

#: The classical priors by name, and what each is.
CLASSICAL = {
    "tv": "total variation (deepinv's TV proximal operator)",
    "wavelet": "wavelet soft-thresholding (scikit-image, BayesShrink, db1-db4 cycle)",
    "nlm": "non-local means (scikit-image, h = 0.8 sigma up to 20/255 and 0.6 sigma above, 5x5 patches)",
    "bm3d": "BM3D (the bm3d package)",
}
# Weight of the TV proximal operator per unit of sigma: prox_{w sigma TV}. Chosen on pre-training
# images (brick, rocket) at sigma 15-50/255, never on the held-out set.
TV_WEIGHT_PER_SIGMA = 0.9
# Non-local means' filter strength h per unit of sigma, below and above 20/255 (same images).
NLM_H_PER_SIGMA = (0.8, 0.6)
# DRUNet downsamples three times: sides are padded to a multiple of 8.
_MULTIPLE = 8
BORDER = 8
# Images above this many pixels are denoised in overlapping tiles (memory stays bounded).
_TILE, _OVERLAP = 512, 32


@dataclass
class Prior:
    """A named denoiser: ``prior(x, sigma)``; ``kind`` is "drunet" or "classical"."""

    name: str
    kind: str
    denoise: Callable[[torch.Tensor, float], torch.Tensor]
    network: nn.Module | None = field(default=None, repr=False)

    def __call__(self, image: torch.Tensor, sigma: float) -> torch.Tensor:
        with torch.no_grad():
            return self.denoise(image, float(sigma))


def self_ensemble(prior: "Prior", image: torch.Tensor, sigma: float) -> torch.Tensor:
    """The mean of the prior over the eight flips and quarter turns of the image (x8 geometric
    self-ensemble): +0.3 dB for the built-in DRUNet at sigma 15 and 25/255 on 128-px crops of six
    pre-training images, for eight times the work of one call."""
    outputs = []
    for turns in range(4):
        for flip in (False, True):
            turned = torch.rot90(image, turns, (-2, -1))
            turned = turned.flip(-1) if flip else turned
            out = prior(turned, sigma)
            out = out.flip(-1) if flip else out
            outputs.append(torch.rot90(out, -turns, (-2, -1)))
    return torch.stack(outputs).mean(0)


def drunet_prior(network: nn.Module, name: str) -> Prior:
    """Wrap a DRUNet: grey images through a colour network as three equal channels (and colour
    through a grey one channel by channel), sides padded to a multiple of 8, large images tiled."""
    channels = network.m_tail.weight.shape[0] if hasattr(network, "m_tail") else 3

    def run(image: torch.Tensor, sigma: float) -> torch.Tensor:
        if image.shape[1] == channels:
            return _tiled(network, image, sigma)
        if channels == 3 and image.shape[1] == 1:
            return _tiled(network, image.expand(-1, 3, -1, -1), sigma).mean(1, keepdim=True)
        if channels == 1:
            return torch.cat([_tiled(network, image[:, c:c + 1], sigma) for c in range(image.shape[1])], dim=1)
        raise ConfigError(f"The denoiser {name} takes {channels}-channel images, not {image.shape[1]}.")

    return Prior(name=name, kind="drunet", denoise=run, network=network)


def _padded(network: nn.Module, image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Reflect-pad by BORDER on every side (the network's zero padding otherwise marks the
    image's edge rows) and up to a multiple of 8, denoise, crop back."""
    height, width = image.shape[-2:]
    border = BORDER if BORDER < min(height, width) else 0
    pad_h, pad_w = (-(height + 2 * border)) % _MULTIPLE, (-(width + 2 * border)) % _MULTIPLE
    pads = (border, border + pad_w, border, border + pad_h)
    mode = "reflect" if max(pads) < min(height, width) else "replicate"
    padded = F.pad(image, pads, mode=mode) if any(pads) else image
    parameter = next(network.parameters())
    out = network(padded.to(parameter.device, parameter.dtype), sigma)
    return out[..., border:border + height, border:border + width].to(image.device, image.dtype)


def _tiled(network: nn.Module, image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Denoise in tiles of 512 px with 32 px of context each side: only each tile's centre is
    kept, so the seams see the same context as any other pixel."""
    height, width = image.shape[-2:]
    if height * width <= (2 * _TILE) ** 2:
        return _padded(network, image, sigma)
    out = torch.empty_like(image)
    for top in range(0, height, _TILE):
        for left in range(0, width, _TILE):
            t0, l0 = max(top - _OVERLAP, 0), max(left - _OVERLAP, 0)
            bottom, right = min(top + _TILE, height), min(left + _TILE, width)
            tile = _padded(network, image[..., t0:min(bottom + _OVERLAP, height), l0:min(right + _OVERLAP, width)], sigma)
            out[..., top:bottom, left:right] = tile[..., top - t0:bottom - t0, left - l0:right - l0]
    return out


def tv_prior() -> Prior:
    """Total variation's proximal operator at weight TV_WEIGHT_PER_SIGMA * sigma, a fresh solver per
    call: deepinv's TVDenoiser warm-starts from its previous answer, which would carry one image's
    (or one problem's) solution into the next."""
    from deepinv.models import TVDenoiser

    def run(image: torch.Tensor, sigma: float) -> torch.Tensor:
        return TVDenoiser(n_it_max=200)(image, ths=TV_WEIGHT_PER_SIGMA * sigma)

    return Prior("tv", "classical", run)


def _per_image(function: Callable[[np.ndarray, float, int | None], np.ndarray]) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """Run a scikit-image style [H, W(, C)] float64 denoiser on each image of a batch."""

    def run(image: torch.Tensor, sigma: float) -> torch.Tensor:
        outs = []
        for one in image.detach().cpu().double().numpy():
            channel_axis = -1 if one.shape[0] == 3 else None
            array = one.transpose(1, 2, 0) if channel_axis is not None else one[0]
            out = np.asarray(function(array, sigma, channel_axis), dtype=np.float32)
            outs.append(out.transpose(2, 0, 1) if channel_axis is not None else out[None])
        return torch.from_numpy(np.stack(outs)).to(image.device, image.dtype)

    return run


def _wavelet(array: np.ndarray, sigma: float, channel_axis: int | None) -> np.ndarray:
    from skimage.restoration import denoise_wavelet

    return denoise_wavelet(array, sigma=max(sigma, 1e-4), mode="soft", method="BayesShrink",
                           wavelet="db2", channel_axis=channel_axis, rescale_sigma=True,
                           convert2ycbcr=channel_axis is not None)


def _nlm(array: np.ndarray, sigma: float, channel_axis: int | None) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    if sigma <= 0:
        return array
    factor = NLM_H_PER_SIGMA[0] if sigma <= 20 / 255 else NLM_H_PER_SIGMA[1]
    return denoise_nl_means(array, h=factor * sigma, sigma=sigma, patch_size=5, patch_distance=6,
                            fast_mode=True, channel_axis=channel_axis)


def _bm3d(array: np.ndarray, sigma: float, channel_axis: int | None) -> np.ndarray:
    import bm3d

    if sigma <= 0:
        return array
    if channel_axis is None:
        return bm3d.bm3d(array, sigma_psd=sigma)
    return bm3d.bm3d_rgb(array, sigma_psd=sigma)


def classical_prior(name: str) -> Prior:
    """One of :data:`CLASSICAL` by name."""
    if name == "tv":
        return tv_prior()
    if name == "bm3d" and importlib.util.find_spec("bm3d") is None:
        raise WeightsUnavailableError("--prior bm3d needs the bm3d package: pip install bm3d.")
    functions = {"wavelet": _wavelet, "nlm": _nlm, "bm3d": _bm3d}
    if name not in functions:
        raise ConfigError(f"Unknown classical prior {name!r}: use one of {', '.join(CLASSICAL)}.")
    return Prior(name, "classical", _per_image(functions[name]))


def load_prior(spec: str) -> Prior:
    """A prior from ``--prior``: ``builtin:drunet``; a classical name (tv, wavelet, nlm, bm3d); a
    run folder of ``transferkit denoiser train``; or a DRUNet weights file (the official
    ``drunet_gray.pth``/``drunet_color.pth``, read with ``weights_only=True``, or safetensors).

    Example:
        >>> load_prior("tv").name
        'tv'
    """
    from . import drunet

    if spec == "builtin:drunet":
        return drunet_prior(drunet.load_builtin(), spec)
    if spec in CLASSICAL:
        return classical_prior(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        from .denoiser_train import load_denoiser_run

        return drunet_prior(load_denoiser_run(path), spec)
    if path.is_file():
        return drunet_prior(drunet.drunet_from_state_dict(drunet.read_weights_file(path), str(path)), spec)
    raise ConfigError(
        f"--prior {spec!r} is neither a prior name nor an existing file or folder. Use builtin:drunet, "
        f"{', '.join(CLASSICAL)}, a run folder of `transferkit denoiser train`, or a DRUNet weights "
        "file (.pth or .safetensors)."
    )
