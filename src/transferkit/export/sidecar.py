"""The sidecar: ``<file>.json`` beside an exported model, so it can be used without transferkit.

It holds the preprocessing (image size, crop, mean, std, interpolation; or the tokenizer folder
copied beside the file), the label names in output order, the input names and shapes, the
transferkit version and the verification result. ONNX files carry the same JSON in their
``metadata_props`` (key ``transferkit``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import ExportError
from ..models import ModelSpec
from .formats import EXPORT_FORMATS
from .graph import GraphInputs

__all__ = ["sidecar_path", "tokenizer_dir", "build_sidecar", "read_sidecar", "is_exported", "missing_keys"]

SCHEMA = 1


def sidecar_path(artifact: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def tokenizer_dir(artifact: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.tokenizer/`` (text models only)."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".tokenizer")


def _preprocessing(spec: ModelSpec, artifact_name: str) -> dict[str, Any]:
    if spec.image is not None:
        image = dataclasses.asdict(spec.image)
        image.update(
            channels="RGB", layout="NCHW", dtype="float32",
            steps=f"resize the short side to {spec.image.resize_size} ({spec.image.interpolation}), "
                  f"centre-crop {spec.image.crop_size}x{spec.image.crop_size}, divide by 255, "
                  "subtract mean and divide by std per channel",
        )
        return {"image": image}
    assert spec.text is not None  # a TransferModel has image or text preprocessing
    return {"text": {
        "tokenizer": artifact_name + ".tokenizer", "max_length": spec.text.max_length,
        "padding": True, "truncation": True, "pooling": spec.text.pooling,
        "normalize": spec.text.normalize, "note": "pooling and normalisation are inside the model",
    }}


def build_sidecar(spec: ModelSpec, fmt: str, artifact_name: str, inputs: GraphInputs, *,
                  dynamic_batch: bool, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sidecar dict for one exported file (see the module docstring).

    Example:
        >>> build_sidecar(spec, "onnx", "model.onnx", inputs, dynamic_batch=True)["labels"]  # doctest: +SKIP
        ['cat', 'dog']
    """
    shapes = []
    for name, tensor in zip(inputs.names, inputs.tensors):
        shape: list[Any] = list(tensor.shape)
        shape[0] = "batch" if dynamic_batch else shape[0]
        if inputs.modality == "text":
            shape[1] = "sequence"
        shapes.append({"name": name, "dtype": str(tensor.dtype).replace("torch.", ""), "shape": shape})
    return {
        "schema": SCHEMA, "format": fmt, "file": artifact_name, "transferkit_version": __version__,
        "model": spec.spec_string, "modality": spec.modality, "labels": list(spec.labels),
        "inputs": shapes, "outputs": [{"name": "logits", "shape": ["batch", len(spec.labels)],
                                       "note": "softmax over the last axis gives probabilities"}],
        "dynamic_batch": dynamic_batch, "preprocessing": _preprocessing(spec, artifact_name),
        **(extra or {}),
    }


def read_sidecar(artifact: str | Path) -> dict[str, Any]:
    """The sidecar of an exported file (or, for ONNX, its metadata when the JSON is missing).

    Raises:
        ExportError: neither exists, or the JSON is unreadable.
    """
    artifact = Path(artifact)
    path = sidecar_path(artifact)
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:
            raise ExportError(f"The sidecar {path} is unreadable ({exc}); export the run again.") from None
    elif artifact.suffix == ".onnx" and artifact.is_file():
        from .onnx import read_metadata

        data = read_metadata(artifact) or {}
    else:
        data = {}
    if not isinstance(data, dict) or data.get("format") not in EXPORT_FORMATS or not data.get("labels"):
        raise ExportError(
            f"{artifact} is not a transferkit export: {path.name} (its sidecar with the labels and "
            "preprocessing) is missing or incomplete. Give a run folder, or a file written by "
            "`transferkit export`."
        )
    missing = missing_keys(data)
    if missing:
        raise ExportError(
            f"The sidecar {path} lacks {', '.join(missing)}, which predicting with {artifact.name} needs; "
            "it was edited or cut short. Export the run again (`transferkit export RUN_DIR --force`)."
        )
    return data


# What ExportedModel reads, by modality: (dotted key, the type it must have).
_REQUIRED: dict[str, tuple[tuple[str, type | tuple[type, ...]], ...]] = {
    "": (("modality", str), ("inputs", list), ("preprocessing", dict)),
    "image": (("preprocessing.image", dict), ("preprocessing.image.resize_size", int),
              ("preprocessing.image.crop_size", int), ("preprocessing.image.mean", list),
              ("preprocessing.image.std", list), ("preprocessing.image.interpolation", str)),
    "text": (("preprocessing.text", dict), ("preprocessing.text.max_length", int)),
}


def missing_keys(data: dict[str, Any]) -> list[str]:
    """The keys ``ExportedModel`` needs that ``data`` lacks or holds with the wrong type.

    Example:
        >>> missing_keys({"modality": "image", "inputs": [], "preprocessing": {"image": {}}})[:2]
        ['preprocessing.image.resize_size', 'preprocessing.image.crop_size']
    """
    modality = data.get("modality")
    wanted = _REQUIRED[""] + (_REQUIRED[modality] if modality in ("image", "text") else ())
    missing = [key for key, kind in wanted if not isinstance(_lookup(data, key), kind)
               or isinstance(_lookup(data, key), bool)]
    if "modality" not in missing and modality not in ("image", "text"):
        missing.append("modality (image or text)")
    inputs = data.get("inputs")
    if isinstance(inputs, list) and (not inputs or not all(
            isinstance(i, dict) and isinstance(i.get("name"), str) and isinstance(i.get("shape"), list) for i in inputs)):
        missing.append("inputs[].name and .shape")
    return missing


def _lookup(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def is_exported(path: str | Path) -> bool:
    """Whether ``path`` is a file with a transferkit sidecar beside it (or ONNX metadata)."""
    path = Path(path)
    if not path.is_file():
        return False
    return sidecar_path(path).is_file() or path.suffix == ".onnx"
