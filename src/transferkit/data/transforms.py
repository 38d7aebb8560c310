"""Inputs -> model tensors: image transforms from the ModelSpec, and text batch collation.

Image transforms are derived from ``ImagePreprocessing`` (the one the pre-trained weights
expect), so nobody has to guess sizes or normalisation.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from transferkit.config import DEFAULT_MAX_IMAGE_PIXELS
from transferkit.data.bundle import Split
from transferkit.errors import ConfigError, DataError

if TYPE_CHECKING:
    from transferkit.models.spec import ImagePreprocessing

__all__ = ["build_image_transform", "ImageTransform", "image_resize", "to_pil_rgb", "load_image_file", "upright", "set_max_image_pixels", "max_image_pixels",
           "ImageTooLargeError",
           "TextCollator", "auto_image_size", "resolve_image_size"]

# Set explicitly, so the cap is transferkit's decision (the --max-image-pixels option), not a
# side effect of the installed PIL version.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_IMAGE_PIXELS
# load_image_file refuses every image over the cap, so PIL's warning between 1x and 2x the cap
# would only repeat (or, as a warning, not stop) what the scan reports as "too large".
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_EXIF_ORIENTATION = 0x0112
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")


def _interpolation(name: str) -> Any:
    from torchvision.transforms import InterpolationMode

    key = str(name).lower()
    if key not in _INTERPOLATIONS:
        raise ConfigError(
            f"interpolation must be one of {', '.join(_INTERPOLATIONS)}, got {name!r}. Fix the "
            "image preprocessing of the model spec."
        )
    return InterpolationMode(key)


class ImageTransform:
    """A PIL RGB image -> the model's tensor, in two parts: ``resize`` (PIL -> PIL, the short
    side to ``resize_size``; deterministic, so :class:`~transferkit.data.decoded.DecodedImages`
    runs it once per image and keeps the result) and ``finish`` (PIL -> float tensor: the
    centre crop or the augmentation, scaling, normalisation; run on every access).

    Calling it runs both: ``finish(resize(image))``.
    """

    def __init__(self, resize: Callable[[Image.Image], Image.Image],
                 finish: Callable[[Image.Image], torch.Tensor]) -> None:
        self.resize = resize
        self.finish = finish

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.finish(self.resize(image))

    def __repr__(self) -> str:
        return f"ImageTransform(resize={self.resize!r}, finish={self.finish!r})"


def image_resize(pre: ImagePreprocessing) -> Callable[[Image.Image], Image.Image]:
    """The deterministic first part of every image transform: the short side to
    ``pre.resize_size`` with PIL (antialiased), the long side in proportion."""
    from torchvision import transforms as T

    return T.Resize(pre.resize_size, interpolation=_interpolation(pre.interpolation))


def build_image_transform(
    pre: ImagePreprocessing, *, train: bool = False, augment: bool = False
) -> ImageTransform:
    """The transform from a PIL RGB image to the normalised tensor the model expects.

    Every transform first resizes the short side to ``pre.resize_size`` (``.resize``, the
    part a decoded-image cache keeps). Evaluation (and training without ``augment``) then
    centre-crops ``pre.crop_size``, scales to [0, 1] and normalises. Training with
    ``augment``: a random crop of 70-100% of the (resized) area resized to ``crop_size`` and a
    slight brightness/contrast jitter. No flips: digits and text in images are not
    mirror-symmetric.

    Args:
        pre: the model's preprocessing (``ModelSpec.image``).
        train: build the training transform.
        augment: with ``train``, add the light augmentation.

    Returns:
        An :class:`ImageTransform`: PIL image -> float32 tensor [3, crop_size, crop_size].

    Example:
        >>> pre = ImagePreprocessing(256, 224, (0.5,) * 3, (0.5,) * 3, "bicubic")
        >>> build_image_transform(pre)(Image.new("RGB", (300, 200))).shape
        torch.Size([3, 224, 224])
    """
    from torchvision import transforms as T

    interpolation = _interpolation(pre.interpolation)
    if train and augment:
        # Cropped from the resized image (not the original), so a cached decode serves it too.
        geometry = [
            T.RandomResizedCrop(pre.crop_size, scale=(0.7, 1.0), interpolation=interpolation),
            T.ColorJitter(brightness=0.1, contrast=0.1),
        ]
    else:
        geometry = [T.CenterCrop(pre.crop_size)]
    finish = T.Compose([*geometry, T.ToTensor(), T.Normalize(mean=list(pre.mean), std=list(pre.std))])
    return ImageTransform(image_resize(pre), finish)


def _array_to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
        arr = arr * 255.0  # float images in [0, 1]
    return np.clip(np.nan_to_num(arr.astype(np.float64)), 0, 255).round().astype(np.uint8)


_WIDE_GREY_MODES = ("I", "I;16", "I;16B", "I;16L", "F")  # 16/32-bit integer and float grey


def _sixteen_bit_to_rgb(img: Image.Image) -> Image.Image:
    # PIL's convert("RGB") clips 16/32-bit grey to 255 instead of scaling; scale by the range.
    arr = np.asarray(img, dtype=np.float64)
    top = 65535.0 if arr.max(initial=0) > 255 else 255.0
    return Image.fromarray((arr.clip(0, top) * (255.0 / top)).round().astype(np.uint8)).convert(
        "RGB"
    )


class ImageTooLargeError(DataError):
    """An image has more pixels than ``DataOptions.max_image_pixels`` (a decompression bomb?)."""

    def __init__(self, path: str, pixels: int, limit: int, size: tuple[int, int] | None = None) -> None:
        shape = f"{size[0]} x {size[1]} = {pixels:,} pixels" if size else f"{pixels:,} pixels"
        self.reason = f"too large ({shape}, limit {limit:,}; raise --max-image-pixels)"
        super().__init__(f"The image {path} is {self.reason}.")


_cap = DEFAULT_MAX_IMAGE_PIXELS  # transferkit's pixel cap; set_max_image_pixels changes it


def set_max_image_pixels(limit: int) -> None:
    """Set the pixel cap on every image transferkit decodes.

    :func:`load_image_file` refuses any file over the cap, from its header, before decoding.
    PIL's own guard (``PIL.Image.MAX_IMAGE_PIXELS``) follows a raised cap but never drops below
    PIL's default: PIL checks it on every crop as well, so a cap under the model's crop
    (224 x 224 = 50,176 pixels) would fail on images the cap let through. PIL only warns
    between its guard and twice it; that warning is silenced, as the cap says more.
    """
    global _cap
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"max_image_pixels must be a whole number >= 1, got {limit!r}.")
    _cap = limit
    Image.MAX_IMAGE_PIXELS = max(limit, DEFAULT_MAX_IMAGE_PIXELS)


def max_image_pixels() -> int:
    """The current pixel cap (:func:`set_max_image_pixels`)."""
    return _cap


def upright(img: Image.Image) -> Image.Image:
    """The pixels turned as the file's EXIF orientation says (phone photos are stored sideways).

    Not ``ImageOps.exif_transpose``: it also rewrites the EXIF block, which fails on broken
    tags that have nothing to do with the pixels.
    """
    method = _ORIENTATIONS.get(img.getexif().get(_EXIF_ORIENTATION, 1))
    return img if method is None else img.transpose(method)


def load_image_file(path: str | os.PathLike[str], max_pixels: int | None = None) -> Image.Image:
    """Decode an image file completely into an upright RGB image: the one decode function of
    the pre-scan (``readers.drop_bad_images``) and of the datasets, so a file the scan accepts
    never fails later.

    Grey, palette, CMYK, LAB, YCbCr and alpha modes are converted by PIL; 16/32-bit grey is
    scaled by its range.

    Args:
        path: the image file.
        max_pixels: the pixel cap (default: the current one, :func:`max_image_pixels`).

    Returns:
        A PIL image in mode ``RGB``.

    Raises:
        ImageTooLargeError: more pixels than the cap.
        Exception: whatever PIL raises for a broken file (callers count it as unreadable).

    Example:
        >>> load_image_file("photo.jpg").mode  # doctest: +SKIP
        'RGB'
    """
    if max_pixels is not None and _cap != max_pixels:
        set_max_image_pixels(max_pixels)  # a DataLoader worker started with another cap
    limit = _cap
    try:
        with Image.open(path) as img:  # reads the header only
            width, height = img.size
            if width * height > limit:  # PIL only warns up to twice its cap
                raise ImageTooLargeError(os.fspath(path), width * height, limit, (width, height))
            img.load()  # decodes everything, so a truncated file fails here
            img = upright(img)
            if img.mode in _WIDE_GREY_MODES:
                return _sixteen_bit_to_rgb(img)
            return img.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Over twice the cap PIL refuses in open() (and between 1x and 2x when warnings are
        # errors, python -W error); its message gives the pixel count, not the sides.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImageTooLargeError(os.fspath(path), int(found.group(1)) if found else limit + 1, limit) from None


def to_pil_rgb(item: Any, max_pixels: int | None = None) -> Image.Image:
    """An image path, uint8 array or PIL image -> an RGB PIL image.

    Grey arrays [H, W] or [H, W, 1] become 3 equal channels; [H, W, 4] drops alpha. Non-uint8
    arrays are scaled (floats in [0, 1] times 255) and clipped to 0..255. Files are decoded
    by :func:`load_image_file` (fully, upright by their EXIF orientation, at most
    ``max_pixels`` pixels).

    Args:
        item: ``str``/``os.PathLike`` path, ``numpy`` array, or ``PIL.Image.Image``.
        max_pixels: files only: the pixel cap (default: the current one, :func:`max_image_pixels`).

    Returns:
        A PIL image in mode ``RGB``.

    Raises:
        DataError: the array shape is not an image, the item type is unknown, or a file is
            over the pixel cap (``ImageTooLargeError``).

    Example:
        >>> to_pil_rgb(np.zeros((28, 28), np.uint8)).mode
        'RGB'
    """
    if isinstance(item, (str, os.PathLike)):
        return load_image_file(item, max_pixels)
    if isinstance(item, Image.Image):
        if item.mode in _WIDE_GREY_MODES:  # as a file of that mode is decoded: scaled, not clipped
            return _sixteen_bit_to_rgb(item)
        return item if item.mode == "RGB" else item.convert("RGB")
    if isinstance(item, np.ndarray):
        arr = item
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim == 3 and arr.shape[-1] == 4:
            arr = arr[..., :3]
        if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
            raise DataError(
                f"An image array must be HxW (grey) or HxWx3 (RGB), got shape {item.shape}. "
                "Reshape flattened images (e.g. 784 -> 28x28) before passing them."
            )
        arr = np.ascontiguousarray(_array_to_uint8(arr))
        return Image.fromarray(arr).convert("RGB")  # 2-D uint8 -> "L", HxWx3 uint8 -> "RGB"
    raise DataError(
        f"Cannot turn a {type(item).__name__} into an image: expected a file path, a numpy uint8 "
        "array or a PIL image."
    )


class TextCollator:
    """Tokenizes a batch of ``(text, label)`` pairs for a DataLoader's ``collate_fn``.

    Padding is per batch (to its longest text), so short texts cost little.

    Args:
        tokenizer: a HuggingFace tokenizer (callable with ``padding``/``truncation``).
        max_length: the most tokens kept per text.

    Example:
        >>> loader = DataLoader(TextDataset(split), batch_size=16,
        ...                     collate_fn=TextCollator(tokenizer, 128))  # doctest: +SKIP
        >>> inputs, labels = next(iter(loader))  # doctest: +SKIP
        >>> inputs["input_ids"].shape, labels.shape  # doctest: +SKIP
        (torch.Size([16, 57]), torch.Size([16]))
    """

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ConfigError(f"max_length must be a whole number >= 1, got {max_length!r}.")
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(
        self, batch: Sequence[tuple[str, int]]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        texts = [text for text, _ in batch]
        labels = torch.tensor([int(label) for _, label in batch], dtype=torch.long)
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        # A plain dict (not BatchEncoding) so that .to(device) loops and pickling stay simple.
        return dict(encoded), labels


def auto_image_size(split: Split, native: int) -> int:
    """Twice the median image side, rounded up to a multiple of 32, between 32 and ``native``.

    Upsampling small images (28-pixel digits) to a model's 224 pixels multiplies the compute
    by 12 and adds no information.

    Example:
        >>> auto_image_size(Split([np.zeros((28, 28), np.uint8)] * 3, [0, 1, 0]), 224)
        64
    """
    sides = []
    for item in split.items[:32]:
        if hasattr(item, "shape"):
            sides.append(min(item.shape[:2]))
        else:
            with Image.open(item) as img:  # reads the header only
                sides.append(min(img.size))
    side = statistics.median(sides) if sides else native
    return int(min(native, max(32, math.ceil(2 * side / 32) * 32)))


def resolve_image_size(option: int | str | None, split: Split, native: int, default: str = "native") -> int:
    """The input size that ``DataOptions.image_size`` asks for: ``native`` (the model's own),
    ``auto`` (:func:`auto_image_size` of ``split``) or pixels; ``None`` means ``default``.

    Example:
        >>> resolve_image_size(None, Split([], []), 224), resolve_image_size(96, Split([], []), 224)
        (224, 96)
    """
    option = default if option is None else option
    if option == "native":
        return native
    if option == "auto":
        return auto_image_size(split, native)
    return int(option)
