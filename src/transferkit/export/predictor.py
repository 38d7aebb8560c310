"""Predict from an exported file: ONNX Runtime or TorchScript, preprocessing from the sidecar."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..config import DEFAULT_MAX_IMAGE_PIXELS
from ..data import image_inputs, set_max_image_pixels
from ..errors import ExportError
from ..inference import check_all_read, check_top_k, top_k_rows
from .formats import EXPORT_FORMATS, check_pair
from .graph import GraphInputs
from .preprocess import load_tokenizer, preprocess_images, tokenize
from .sidecar import read_sidecar, tokenizer_dir

__all__ = ["ExportedModel", "load_exported"]


class ExportedModel:
    """An exported model with its sidecar: ``predict`` like a run folder, without the run.

    Attributes:
        path: the exported file.
        sidecar: the sidecar dict (format, labels, preprocessing, verification, ...).
        labels: class names in output order.
        modality: ``image`` or ``text``.

    Example:
        >>> model = load_exported("runs/my-run/export/model.onnx")  # doctest: +SKIP
        >>> model.predict(["cat.jpg"], top_k=2)[0]["label"]  # doctest: +SKIP
        'cat'
    """

    def __init__(self, path: Path, sidecar: dict[str, Any], device: str = "cpu") -> None:
        self.path, self.sidecar, self.device = path, sidecar, device
        self.labels: list[str] = list(sidecar["labels"])
        self.modality: str = sidecar["modality"]
        self.format: str = sidecar["format"]
        self.names = [i["name"] for i in sidecar["inputs"]]
        self._format = EXPORT_FORMATS.get(self.format)
        if self._format.device == "cuda":  # TensorRT engines run on CUDA only
            self.device = "cuda"
        self._runner = self._format.open(self.path, self.device)
        self._tokenizer: Any = None

    def _feeds(self, inputs: Sequence[Any], unreadable: dict[str, str] | None = None) -> dict[str, np.ndarray]:
        pre = self.sidecar["preprocessing"]
        if self.modality == "image":
            return {"input": preprocess_images(inputs, pre["image"], unreadable)}
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(tokenizer_dir(self.path))
        return tokenize(self._tokenizer, [str(t) for t in inputs], int(pre["text"]["max_length"]))

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        tensors = tuple(torch.from_numpy(feed[n]) for n in self.names)
        return self._format.run(self._runner, GraphInputs(self.names, tensors, self.modality), self.device)

    def run_inputs(self, inputs: GraphInputs) -> np.ndarray:
        """Logits [B, C] of inputs already preprocessed into the file's named tensors (no
        image decoding or tokenizing: what latency measurements time)."""
        return self._format.run(self._runner, inputs, self.device)

    def logits(self, inputs: Sequence[Any], batch_size: int | None = None,
               unreadable: dict[str, str] | None = None) -> np.ndarray:
        """Logits [N, C] for image paths/arrays or texts, in batches; with ``unreadable``, image
        files that do not decode are recorded there (``{path: reason}``) and have no row."""
        size = batch_size or (8 if self.modality == "image" else 32)
        if not self.sidecar.get("dynamic_batch", True):
            size = int(self.sidecar["inputs"][0]["shape"][0])  # a fixed-batch file takes exactly that
        feeds = (self._feeds(inputs[i : i + size], unreadable) for i in range(0, len(inputs), size))
        out = [self._run(feed) for feed in feeds if len(next(iter(feed.values())))]  # all broken: no run
        return np.concatenate(out) if out else np.empty((0, len(self.labels)), np.float32)

    def predict(self, inputs: Sequence[Any], top_k: int = 5, batch_size: int | None = None,
                max_image_pixels: int | None = None) -> list[dict[str, Any]]:
        """Top-k labels with probabilities, in the format of :func:`transferkit.predict`
        (``max_image_pixels``: the pixel cap, default ``DataOptions``' default: the sidecar does
        not keep the run's).

        Returns:
            One dict per input: ``{"input", "label", "score", "top_k": [{"label", "score"}, ...]}``.

        Raises:
            UnreadableImagesError: some images do not decode (see :func:`transferkit.predict`).
        """
        check_top_k(top_k)
        if self.modality != "image":
            return top_k_rows([str(i) for i in inputs], self.logits(list(inputs), batch_size), self.labels, top_k)
        set_max_image_pixels(max_image_pixels or DEFAULT_MAX_IMAGE_PIXELS)  # never an earlier call's
        items = image_inputs(inputs)  # a folder: every image file below it
        unreadable: dict[str, str] = {}  # filled while decoding: each image is decoded once
        logits = self.logits(items, batch_size, unreadable)
        kept = [str(i) for i in items if not isinstance(i, (str, os.PathLike)) or os.fspath(i) not in unreadable]
        return check_all_read(top_k_rows(kept, logits, self.labels, top_k), unreadable, len(kept) + len(unreadable))


def load_exported(path: str | Path, device: str = "cpu") -> ExportedModel:
    """Load a file written by :func:`transferkit.export_run` (ONNX, TorchScript or TensorRT).

    Args:
        path: the exported file; its sidecar ``<file>.json`` (and for text models the
            ``<file>.tokenizer/`` folder) must lie beside it.
        device: ``cpu`` or ``cuda`` (TensorRT files always run on CUDA).

    Raises:
        ExportError: the file is missing or has no transferkit sidecar.

    Example:
        >>> load_exported("model.onnx").predict(["a great film"], top_k=1)[0]["label"]  # doctest: +SKIP
        'pos'
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"Exported model {path} does not exist; give the file `transferkit export` printed.")
    sidecar = read_sidecar(path)
    check_pair(path, sidecar)  # not another export's sidecar (a --force replacement cut short)
    return ExportedModel(path, sidecar, device)
