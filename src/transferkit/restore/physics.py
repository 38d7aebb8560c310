"""Degradations as deepinv physics: what ``--task``, ``--kernel``, ``--noise-sigma``, ``--mask``,
``--mask-ratio`` and ``--scale`` describe, checked against the image before anything runs.

Operators act on [B, C, H, W] float images. The solver works on a *domain* that may be larger than
the image: a blurred image is extended by reflection by the kernel's size on each side, so that the
FFT (circular) data step wraps only inside the margin, which is cropped away at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from transferkit.errors import ConfigError, DataError

TASKS = ("deblur", "inpaint", "super-resolve", "denoise")
SCALES = (2, 3, 4)
#: The noise levels the denoisers were trained on (0-1 scale): measurement noise above it cannot
#: be removed by them.
MAX_NOISE_SIGMA = 50 / 255
#: Default measurement noise per task (0-1 scale).
DEFAULT_NOISE = {"deblur": 0.01, "inpaint": 0.01, "super-resolve": 0.01, "denoise": 25 / 255}
DEFAULT_KERNEL = "gaussian:1.6"
DEFAULT_MASK_RATIO = 0.5


@dataclass(frozen=True)
class Degradation:
    """What happened to the image (or, with ``--simulate``, what to do to it).

    Example:
        >>> Degradation("deblur", kernel="motion:15,30", noise_sigma=0.01).describe()
        'deblur, kernel motion:15,30, noise sigma 0.01'
    """

    task: str
    kernel: str | None = None  # gaussian:SIGMA | motion:LENGTH,ANGLE | FILE.npy (deblur)
    noise_sigma: float | None = None  # 0-1 scale; None: DEFAULT_NOISE[task]
    mask: Path | None = None  # inpaint: white = known pixel
    mask_ratio: float | None = None  # inpaint with --simulate: the fraction of pixels removed
    scale: int = 2  # super-resolve

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"Unknown task {self.task!r}. Use one of: {', '.join(TASKS)}.")
        sigma = self.sigma
        if not (0.0 <= sigma <= MAX_NOISE_SIGMA + 1e-9) or math.isnan(sigma):
            raise ConfigError(
                f"--noise-sigma {sigma:g} is out of range: it is on the 0-1 scale and the denoisers "
                f"handle 0 to {MAX_NOISE_SIGMA:.3f} (50/255). For noise of 25 on the 0-255 scale "
                "pass 0.098."
            )
        if self.task == "super-resolve" and self.scale not in SCALES:
            raise ConfigError(f"--scale {self.scale} is not supported: use 2, 3 or 4.")
        if self.mask_ratio is not None and not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError(f"--mask-ratio {self.mask_ratio:g} must be between 0 and 1 (the fraction of pixels lost).")
        if self.task != "deblur" and self.kernel is not None:
            raise ConfigError(f"--kernel describes a blur; it does not apply to --task {self.task}.")
        if self.task != "inpaint" and (self.mask is not None or self.mask_ratio is not None):
            raise ConfigError(f"--mask and --mask-ratio describe inpainting; they do not apply to --task {self.task}.")

    @property
    def sigma(self) -> float:
        """The measurement noise level on the 0-1 scale."""
        return DEFAULT_NOISE[self.task] if self.noise_sigma is None else float(self.noise_sigma)

    def describe(self) -> str:
        parts = [self.task]
        if self.task == "deblur":
            parts.append(f"kernel {self.kernel or DEFAULT_KERNEL}")
        if self.task == "super-resolve":
            parts.append(f"scale x{self.scale}")
        if self.task == "inpaint":
            parts.append(f"mask {self.mask}" if self.mask else f"mask ratio {self.mask_ratio or DEFAULT_MASK_RATIO:g}")
        parts.append(f"noise sigma {self.sigma:g}")
        return ", ".join(parts)


def parse_kernel(spec: str | None) -> torch.Tensor:
    """A blur kernel [1, 1, k, k] (k odd, non-negative, sums to 1) from ``--kernel``.

    Example:
        >>> parse_kernel("gaussian:1.6").shape
        torch.Size([1, 1, 13, 13])
    """
    spec = spec or DEFAULT_KERNEL
    kind, _, value = spec.partition(":")
    if kind not in ("gaussian", "motion") and spec.endswith(".npy"):
        return _kernel_file(Path(spec))
    try:
        numbers = [float(part) for part in value.split(",")] if value else []
    except ValueError:
        numbers = []
    if kind == "gaussian" and len(numbers) == 1 and math.isfinite(numbers[0]):
        return _gaussian_kernel(numbers[0])
    if kind == "motion" and len(numbers) == 2 and all(map(math.isfinite, numbers)):
        return _motion_kernel(*numbers)
    raise ConfigError(
        f"--kernel {spec!r} is not understood. Use gaussian:SIGMA (pixels, e.g. gaussian:1.6), "
        "motion:LENGTH,ANGLE (pixels and degrees, e.g. motion:15,30) or a 2-D kernel saved with "
        "numpy.save as FILE.npy."
    )


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    if not 0.1 <= sigma <= 25:
        raise ConfigError(f"--kernel gaussian:{sigma:g}: the standard deviation must be between 0.1 and 25 pixels.")
    from deepinv.physics.functional import gaussian_blur

    return gaussian_blur(sigma=(sigma, sigma)).float()


def _motion_kernel(length: float, angle_degrees: float) -> torch.Tensor:
    """A straight motion path of ``length`` pixels at ``angle_degrees`` (counter-clockwise from
    the x axis), drawn with bilinear weights so sub-pixel lengths and angles are exact."""
    if not 1 <= length <= 101:
        raise ConfigError(f"--kernel motion:{length:g},{angle_degrees:g}: the length must be between 1 and 101 pixels.")
    size = 2 * math.ceil(length / 2) + 1
    kernel = torch.zeros(size + 1, size + 1, dtype=torch.float64)
    centre, angle = size // 2, math.radians(angle_degrees)
    for t in torch.linspace(-(length - 1) / 2, (length - 1) / 2, int(length * 8) + 1).tolist():
        x, y = centre + t * math.cos(angle), centre - t * math.sin(angle)
        x0, y0 = math.floor(x), math.floor(y)
        fx, fy = x - x0, y - y0
        kernel[y0, x0] += (1 - fx) * (1 - fy)
        kernel[y0, x0 + 1] += fx * (1 - fy)
        kernel[y0 + 1, x0] += (1 - fx) * fy
        kernel[y0 + 1, x0 + 1] += fx * fy
    kernel = kernel[:size, :size]
    return (kernel / kernel.sum()).float()[None, None]


def _kernel_file(path: Path) -> torch.Tensor:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"Cannot read the kernel file {path}: {exc}. Save a 2-D float array with numpy.save.") from exc
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all() \
            or (array < 0).any() or array.sum() <= 0:
        raise DataError(
            f"The kernel in {path} must be a 2-D array of finite, non-negative numbers with a positive "
            f"sum (it has shape {array.shape}, dtype {array.dtype}). Save one with numpy.save."
        )
    # An even side gets a zero row/column so the kernel has a centre pixel.
    array = np.pad(array.astype(np.float64), ((0, 1 - array.shape[0] % 2), (0, 1 - array.shape[1] % 2)))
    side = max(array.shape)
    array = np.pad(array, (((side - array.shape[0]) // 2,) * 2, ((side - array.shape[1]) // 2,) * 2))
    return torch.from_numpy(array / array.sum()).float()[None, None]


def read_mask(path: Path, height: int, width: int) -> torch.Tensor:
    """A mask image as [1, 1, H, W] floats (1 = known pixel: white, or any value above half)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            mask = np.asarray(opened.convert("L"), dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"Cannot read the mask {path}: {exc}. Pass a PNG where white marks the known pixels.") from exc
    if mask.shape != (height, width):
        raise DataError(
            f"The mask {path} is {mask.shape[1]}x{mask.shape[0]} pixels but the image is {width}x{height}. "
            "Pass a mask of the image's size (white = known pixel, black = to fill in)."
        )
    return torch.from_numpy((mask > 0.5).astype(np.float32))[None, None]


def random_mask(height: int, width: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """[1, 1, H, W]: each pixel lost with probability ``ratio`` (the same pixels in every channel)."""
    return (torch.rand(1, 1, height, width, generator=generator) >= ratio).float()


def check_kernel_fits(kernel: torch.Tensor, height: int, width: int) -> None:
    if kernel.shape[-1] > min(height, width):
        raise DataError(
            f"The blur kernel ({kernel.shape[-1]}x{kernel.shape[-1]} pixels) is larger than the image "
            f"({width}x{height}). Pass a smaller kernel or a larger image."
        )


def check_scale_divides(scale: int, height: int, width: int) -> None:
    if height % scale or width % scale:
        raise DataError(
            f"--scale {scale} does not divide the clean image's size ({width}x{height}), so it cannot be "
            f"downsampled exactly for --simulate. Crop it to {width - width % scale}x{height - height % scale} "
            "or pick another scale."
        )


def reflect_margin(kernel: torch.Tensor) -> int:
    """Pixels added on each side for the FFT data step of a blur: the kernel's full size."""
    return int(kernel.shape[-1])


def pad_reflect(image: torch.Tensor, margin: int) -> torch.Tensor:
    """Extend [B, C, H, W] by reflection; margins larger than the image fall back to replication."""
    if margin <= 0:
        return image
    mode = "reflect" if margin < min(image.shape[-2:]) else "replicate"
    return F.pad(image, (margin,) * 4, mode=mode)


def edge_taper(padded: torch.Tensor, operator, margin: int, iterations: int = 20) -> torch.Tensor:
    """Make a reflect-padded blurred image consistent with *circular* blur near its outer edge
    (MATLAB's edgetaper, repeated): the margin is blended, by a window that is 1 on the image and
    falls to 0 at the edge, with its own circular blur. Without it, the FFT data step's wrap-around
    mismatch rings through the whole image for kernels with spectral zeros (motion blur on camera:
    27.2 dB with 20 passes against 24.7 dB with one and 21.3 dB for the blurred input)."""
    if margin <= 0:
        return padded

    def window(length: int) -> torch.Tensor:
        ramp = torch.sin(torch.linspace(0, 1, margin) * math.pi / 2) ** 2
        return torch.cat([ramp, torch.ones(length - 2 * margin), ramp.flip(0)])

    weight = (window(padded.shape[-2])[:, None] * window(padded.shape[-1])[None, :]).to(padded)
    for _ in range(iterations):
        padded = weight * padded + (1 - weight) * operator.A(padded)
    return padded


def blur_operator(kernel: torch.Tensor, shape: tuple[int, int, int]):
    """Circular blur on a (padded) [C, H, W] domain, with deepinv's closed-form FFT data step."""
    from deepinv.physics import BlurFFT

    return BlurFFT(img_size=shape, filter=kernel)


def blur_for_simulation(kernel: torch.Tensor):
    """The blur a camera applies: reflection at the borders, output the image's size."""
    from deepinv.physics import Blur

    return Blur(filter=kernel, padding="reflect")


def inpaint_operator(mask: torch.Tensor, shape: tuple[int, int, int]):
    from deepinv.physics import Inpainting

    return Inpainting(img_size=shape, mask=mask.expand(1, shape[0], -1, -1).clone())


def downsampling_operator(scale: int, shape: tuple[int, int, int]):
    """Bicubic anti-aliasing then decimation by ``scale`` (circular), with the closed-form data step."""
    from deepinv.physics import Downsampling

    return Downsampling(img_size=shape, filter="bicubic", factor=scale, padding="circular")


def denoise_operator():
    from deepinv.physics import Denoising

    return Denoising()
