"""Reading, writing and scoring images for restoration.

Images are float32 tensors [1, C, H, W] in [0, 1] with C = 1 (grey) or 3 (colour): a grey file
stays grey, an image with an alpha channel loses it, 16-bit files keep their precision, and a
file with an EXIF orientation is turned upright, as the datasets decode it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from transferkit.data.transforms import upright
from transferkit.errors import ConfigError, DataError
from transferkit.io.atomic import atomic_write

#: What ``--out`` may end with (what Pillow writes without loss or with its default quality).
OUTPUT_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".webp")


def read_image(path: str | Path) -> torch.Tensor:
    """[1, C, H, W] float32 in [0, 1]; an unreadable file is a DataError naming it.

    Example:
        >>> read_image("photo.png").shape  # doctest: +SKIP
        torch.Size([1, 3, 512, 512])
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as opened:
            opened.load()
            array = _as_array(upright(opened))  # as viewers show it: a phone photo is stored sideways
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(
            f"The image {path} cannot be read: {' '.join(str(exc).split()) or type(exc).__name__}. Pass a PNG, "
            "JPEG, TIFF, BMP or WebP file."
        ) from None
    if array.shape[1] < 8 or array.shape[2] < 8:
        raise DataError(f"The image {path} is {array.shape[2]}x{array.shape[1]} pixels; restoration needs at least 8x8.")
    return torch.from_numpy(array)[None]


def _as_array(opened) -> np.ndarray:
    """[C, H, W] float32 in [0, 1] from a Pillow image of any common mode."""
    if opened.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(opened, dtype=np.float32)
        return (array / (65535.0 if array.max() > 255 else 255.0)).clip(0, 1)[None]
    if opened.mode in ("1", "L", "LA", "P") and _is_grey(opened):
        return (np.asarray(opened.convert("L"), dtype=np.float32) / 255.0)[None]
    return np.asarray(opened.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0


def _is_grey(opened) -> bool:
    if opened.mode != "P":
        return True
    palette = np.asarray(opened.convert("RGB"))
    return bool((palette[..., 0] == palette[..., 1]).all() and (palette[..., 1] == palette[..., 2]).all())


def check_output_path(path: str | Path) -> Path:
    """``--out`` must name an image file in an existing folder (checked before any work)."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"--out {path} must end with one of {', '.join(OUTPUT_SUFFIXES)} (it names the restored image).")
    if not path.parent.is_dir():
        raise ConfigError(f"--out {path}: the folder {path.parent} does not exist. Create it first.")
    return path


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[1, C, H, W] or [C, H, W] float -> [H, W] or [H, W, 3] uint8 (rounded, clipped)."""
    array = image.detach().cpu().float().reshape(-1, *image.shape[-2:]).clamp(0, 1).numpy()
    array = np.rint(array * 255.0).astype(np.uint8)
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def write_image(path: str | Path, image: torch.Tensor) -> None:
    """Write atomically (temporary file, then rename): a failed write leaves nothing behind."""
    from PIL import Image

    picture = Image.fromarray(to_uint8(image))
    image_format = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(
        Path(path).suffix.lower(), Path(path).suffix.lower().lstrip(".").upper())
    atomic_write(path, lambda tmp: picture.save(tmp, format=image_format))


def psnr(image: torch.Tensor, reference: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB (peak 1), the image clipped to [0, 1] first."""
    mse = float(((image.clamp(0, 1) - reference) ** 2).mean())
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def ssim(image: torch.Tensor, reference: torch.Tensor) -> float:
    """Structural similarity (scikit-image's, Gaussian-weighted as Wang et al. 2004), data range 1."""
    from skimage.metrics import structural_similarity

    a = image.detach().cpu().double().clamp(0, 1).reshape(-1, *image.shape[-2:]).numpy()
    b = reference.detach().cpu().double().reshape(-1, *reference.shape[-2:]).numpy()
    channel_axis = 0 if a.shape[0] > 1 else None
    a, b = (a, b) if channel_axis is not None else (a[0], b[0])
    return float(structural_similarity(a, b, data_range=1.0, channel_axis=channel_axis, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False))
