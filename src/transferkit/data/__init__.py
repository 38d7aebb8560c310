"""Labelled data for transfer learning: loading, stratified splits, transforms, datasets.

Example:
    >>> from transferkit.data import load_data
    >>> bundle = load_data("builtin:digits", seed=0)
    >>> bundle.modality, len(bundle.classes)
    ('image', 10)
"""

from transferkit.data.builtin import BUILTIN_DATASETS
from transferkit.data.bundle import DataBundle, DataReport, Split
from transferkit.data.datasets import (
    ImageDataset,
    TextDataset,
    as_data_options,
    load_data,
    load_eval_split,
)
from transferkit.data.decoded import DecodedCache, DecodedImages
from transferkit.data.readers import image_inputs, unreadable_images
from transferkit.data.transforms import (
    ImageTransform,
    TextCollator,
    auto_image_size,
    build_image_transform,
    resolve_image_size,
    set_max_image_pixels,
    to_pil_rgb,
)

__all__ = [
    "Split",
    "DataBundle",
    "DataReport",
    "load_data",
    "load_eval_split",
    "as_data_options",
    "auto_image_size",
    "resolve_image_size",
    "build_image_transform",
    "to_pil_rgb",
    "image_inputs",
    "unreadable_images",
    "set_max_image_pixels",
    "ImageDataset",
    "ImageTransform",
    "DecodedCache",
    "DecodedImages",
    "TextDataset",
    "TextCollator",
    "BUILTIN_DATASETS",
]
