"""Preprocessing from a sidecar alone, with NumPy and PIL (no torchvision, no run folder).

Reproduces the evaluation transform of :func:`transferkit.data.build_image_transform`
(torchvision ``Resize(short side) -> CenterCrop -> ToTensor -> Normalize``) step by step, so an
exported model sees the same pixels as the run it came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..data import to_pil_rgb
from ..errors import DataError

__all__ = ["preprocess_images", "tokenize", "load_tokenizer"]

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC, "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING, "lanczos": Image.Resampling.LANCZOS,
}


def _resize_short_side(img: Image.Image, size: int, interpolation: str) -> Image.Image:
    """Short side to ``size``, long side ``int(size * long / short)`` (torchvision's rounding)."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return img.resize((new_w, new_h), _RESAMPLE[interpolation])


def _center_crop(arr: np.ndarray, crop: int) -> np.ndarray:
    """[H, W, 3] -> [crop, crop, 3]; zero-padded first when smaller (as torchvision does)."""
    h, w = arr.shape[:2]
    if h < crop or w < crop:
        pad_h, pad_w = max(crop - h, 0), max(crop - w, 0)
        arr = np.pad(arr, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
        h, w = arr.shape[:2]
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    return arr[top : top + crop, left : left + crop]


def preprocess_images(items: Sequence[Any], image: dict[str, Any],
                      unreadable: dict[str, str] | None = None) -> np.ndarray:
    """Image files (or arrays, PIL images) -> the model input, float32 [N, 3, crop, crop].

    Args:
        items: image paths, uint8 arrays or PIL images.
        image: the sidecar's ``preprocessing.image`` (resize_size, crop_size, mean, std,
            interpolation).
        unreadable: when given, a file that does not decode is recorded here (``{path: reason}``)
            and left out of the output, so each image is decoded once; else it is a DataError.

    Example:
        >>> preprocess_images(["cat.jpg"], sidecar["preprocessing"]["image"]).shape  # doctest: +SKIP
        (1, 3, 224, 224)
    """
    mean = np.asarray(image["mean"], dtype=np.float32)
    std = np.asarray(image["std"], dtype=np.float32)
    crop = int(image["crop_size"])
    rows = []
    for item in items:
        try:
            img = to_pil_rgb(item)
        except Exception as exc:  # PIL raises many types for bad files
            reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"  # too large: its own
            if unreadable is not None and isinstance(item, (str, os.PathLike)):
                unreadable[os.fspath(item)] = reason
                continue
            raise DataError(f"Cannot read image {item!r} ({reason}); give paths to image files (jpg, png, ...).") from None
        img = _resize_short_side(img, int(image["resize_size"]), str(image["interpolation"]).lower())
        pixels = _center_crop(np.asarray(img, dtype=np.float32) / 255.0, crop)  # [H, W, 3]
        rows.append(((pixels - mean) / std).transpose(2, 0, 1))  # [3, H, W]
    return np.stack(rows).astype(np.float32, copy=False) if rows else np.empty((0, 3, crop, crop), np.float32)


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> dict[str, np.ndarray]:
    """Texts -> int64 tokenizer arrays [N, T] (padded to the longest, truncated at max_length)."""
    encoded = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np")
    return {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}


def load_tokenizer(folder: Path) -> Any:
    """``AutoTokenizer`` from the folder copied beside the exported file (never downloads)."""
    from transformers import AutoTokenizer

    if not folder.is_dir():
        raise DataError(f"The tokenizer folder {folder} is missing; copy it with the exported model "
                        "(it is written beside the file by `transferkit export`).")
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
