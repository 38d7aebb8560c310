"""torchvision classification models: ``torchvision:<name>[@WEIGHTS]``.

Weights come from the torch hub cache (``torch.hub.get_dir()/checkpoints``); when missing they
are downloaded (unless offline: ``TRANSFERKIT_OFFLINE``, ``HF_HUB_OFFLINE`` or
``TRANSFORMERS_OFFLINE`` = 1), and if that fails the error names the cache file and the
``--weights PATH`` / ``--no-pretrained`` alternatives. A cached file is checked against the hash
in its name and read with ``torch.load(weights_only=True)``. Preprocessing always comes
from the weights' ``transforms()`` metadata, which ships with torchvision (offline).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import hashlib
import os
import threading
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import torch
from torch import nn

from transferkit.errors import ModelLoadError, UnknownModelError
from transferkit.models.base import TransferModel
from transferkit.models.groups import GroupRules, chunk_units
from transferkit.models.heads import find_classifier, strip_classifier
from transferkit.models.spec import ImagePreprocessing, ModelSpec
from transferkit.models.weights import (
    is_offline,
    load_source_weights,
    network_timeout,
    read_weights_file,
    unavailable_error,
)

__all__ = ["ImageBackbone", "from_module", "load", "rebuild", "list_infos", "weights_cache_file", "read_cached_state",
           "group_rules", "check_name"]

_TRUNK_NAMES = ("features", "trunk_output", "blocks", "layers", "stages")
_BUILD_LOCK = threading.Lock()  # one build at a time while the weights reader is redirected


class ImageBackbone(nn.Module):
    """Wraps a source model whose classifier is ``nn.Identity``: ``[B, 3, H, W] -> [B, F]``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        # GoogLeNet/Inception return (logits, aux...) in train mode; the first is the features.
        return out[0] if isinstance(out, tuple) else out


def _model_names() -> list[str]:
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def _check_name(name: str) -> None:
    names = _model_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"Unknown torchvision model {name!r}.{hint} Run `transferkit models torchvision` to "
            f"list all {len(names)} (e.g. torchvision:resnet18, torchvision:efficientnet_b0)."
        )


def _weights_member(name: str, weights_name: str) -> Any:
    from torchvision.models import get_model_weights

    enum = get_model_weights(name)
    members = list(enum.__members__)
    if weights_name not in members:
        raise UnknownModelError(
            f"torchvision model {name!r} has no weights {weights_name!r}; choose one of "
            f"{', '.join(members)} (e.g. torchvision:{name}@{members[0]})."
        )
    return enum[weights_name]


def check_name(name: str) -> None:
    """Raise UnknownModelError unless ``<name>[@WEIGHTS]`` names a torchvision model and weights
    enum member; nothing is built or downloaded."""
    name, _, weights_name = name.partition("@")
    _check_name(name)
    _weights_member(name, weights_name or "DEFAULT")


def weights_cache_file(weights: Any) -> Path:
    """Where torch hub caches ``weights`` (``<hub dir>/checkpoints/<basename of url>``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _preprocessing(weights: Any) -> ImagePreprocessing:
    t = weights.transforms()

    def first(v: Any) -> int:
        return int(v[0] if isinstance(v, (list, tuple)) else v)

    interp = getattr(t.interpolation, "value", str(t.interpolation))
    return ImagePreprocessing(
        resize_size=first(t.resize_size), crop_size=first(t.crop_size),
        mean=tuple(t.mean), std=tuple(t.std), interpolation=str(interp),
    )


def _ensure_cached(name: str, weights: Any) -> Path:
    """Make sure the weights file is in the hub cache, downloading it if allowed; its path."""
    path = weights_cache_file(weights)
    if path.is_file():
        return path
    what = f"torchvision:{name} ({weights.name})"
    if is_offline():
        raise unavailable_error(what, str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with network_timeout():  # torch.hub writes a temporary file and renames it into place
            torch.hub.download_url_to_file(weights.url, str(path), progress=True)
    except Exception as err:  # URLError, socket timeout, HTTP errors: all mean "not available"
        raise unavailable_error(what, str(path), err) from err
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):  # 1 MiB at a time: files reach 2.5 GB
            digest.update(chunk)
    return digest.hexdigest()


def _damaged(path: Path, problem: str) -> ModelLoadError:
    return ModelLoadError(
        f"The cached weights file {path} {problem}. Fix: delete it and run again online so it is "
        f"downloaded again, or pass `--weights PATH` (a local state_dict for this architecture), "
        f"or use `--no-pretrained`."
    )


def read_cached_state(path: Path) -> dict[str, Any]:
    """Read a torch hub weights file: checksum first, then ``torch.load(weights_only=True)``.

    torchvision names its files ``<model>-<first hex digits of the SHA-256>.pth``
    (``resnet18-f37072fd.pth``), torch hub's rule (``torch.hub.HASH_REGEX``); a file that does
    not match is damaged or not the published one. ``weights_only`` means a file cannot run code.

    Raises:
        ModelLoadError: the checksum differs, or the file is not a tensors-only state_dict.
    """
    match = torch.hub.HASH_REGEX.search(path.name)
    if match and match.group(1):
        expected, actual = match.group(1), _sha256(path)
        if not actual.startswith(expected):
            raise _damaged(path, f"is damaged or not the published file: its SHA-256 starts with "
                                 f"{actual[:len(expected)]}, its name says {expected}")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # truncated file, pickled objects other than tensors
        raise _damaged(path, f"cannot be read as a state_dict ({type(err).__name__}: {err})") from err


@contextlib.contextmanager
def _builders_use(url: str, state: dict[str, Any]) -> Iterator[None]:
    """Hand torchvision's model builders the state_dict already read by :func:`read_cached_state`.

    A builder given ``weights=`` also sets the architecture options those weights need
    (``transform_input``, ``image_size``, DenseNet's key renaming, GoogLeNet dropping its aux
    heads), which building with ``weights=None`` would lose; but it reads the file through
    ``torchvision.models._api.load_state_dict_from_url``, which unpickles with
    ``weights_only=False`` and checks no hash for a cached file. For the duration of the build
    that one function returns the checked state instead; any other URL is refused.
    """
    from torchvision.models import _api

    original = _api.load_state_dict_from_url

    def checked_state(requested: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if requested != url:
            raise UnknownModelError(f"torchvision asked for weights at {requested}, expected {url}.")
        return state

    with _BUILD_LOCK:
        _api.load_state_dict_from_url = checked_state
        try:
            yield
        finally:
            _api.load_state_dict_from_url = original


def _pretrained_model(name: str, member: Any) -> nn.Module:
    """``get_model(name, weights=member)`` from the checked cache file (downloaded if allowed)."""
    from torchvision.models import get_model

    state = read_cached_state(_ensure_cached(name, member))
    with _builders_use(member.url, state):
        return get_model(name, weights=member)


def group_rules(model: nn.Module) -> GroupRules:
    """Ordered layer groups of a torchvision model, prefixes relative to the backbone wrapper.

    ResNet: stem (conv1, bn1), layer1..layer4. ViT: stem (conv_proj, class_token,
    pos_embedding), one group per encoder layer (merged to <= 8). Models with a trunk
    Sequential (``features`` ...): its first child is the stem (unless children come before it),
    each following child a group (merged to ~8 when more than 10). Anything else: one group per
    top-level child. Parameters left over (ViT ``encoder.ln``, MobileNetV3 pre-logits, ConvNeXt's
    classifier LayerNorm) join the last group.
    """

    def has_params(m: nn.Module) -> bool:
        return any(True for _ in m.parameters())

    if hasattr(model, "conv_proj") and hasattr(model, "encoder") and hasattr(model.encoder, "layers"):
        units = [(f"blocks.{i}", [f"encoder.layers.{n}"]) for i, (n, _) in enumerate(model.encoder.layers.named_children())]
        rules = [("stem", ["conv_proj", "class_token", "encoder.pos_embedding"])] + chunk_units(units, 8, 8)
    elif all(hasattr(model, a) for a in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")):
        rules = [("stem", ["conv1", "bn1"])] + [(f"layer{i}", [f"layer{i}"]) for i in range(1, 5)]
    else:
        children = [(n, c) for n, c in model.named_children() if has_params(c)]
        trunk = next((n for n, c in children if n in _TRUNK_NAMES and isinstance(c, (nn.Sequential, nn.ModuleList))), None)
        if trunk is not None:
            before = [n for n, _ in children[: [n for n, _ in children].index(trunk)]]
            kids = [(k, c) for k, c in getattr(model, trunk).named_children() if has_params(c)]
            # DenseNet-style trunks start and end with bare layers (conv0, norm0 ... norm5): leading
            # ones form the stem, trailing ones join the last block (the fallback group).
            lead = next((i for i, (_, c) in enumerate(kids) if len(list(c.children())) > 0), len(kids))
            while len(kids) > lead + 1 and not list(kids[-1][1].children()):
                kids.pop()
            items = [(f"{trunk}.{k}", [f"{trunk}.{k}"]) for k, _ in kids]
            n_stem = lead if 0 < lead < len(kids) else 1  # all-bare trunks (VGG): first layer
            if before:
                stem, blocks = before, items
            else:
                stem, blocks = [p for _, ps in items[:n_stem] for p in ps], items[n_stem:]
        elif children:
            stem, blocks = [children[0][0]], [(n, [n]) for n, _ in children[1:]]
        else:  # nothing but the (removed) classifier: no backbone parameters to group
            stem, blocks = [], []
        rules = [("stem", stem)] + chunk_units(blocks, 10, 8)
    return [(g, [f"model.{p}" for p in prefixes]) for g, prefixes in rules]


def _wrap(model: nn.Module, num_classes: int, spec: ModelSpec) -> TransferModel:
    head_path, num_features = strip_classifier(model)
    rules = group_rules(model)  # after the strip: the Identity head has no parameters to group
    spec.head_name = head_path
    return TransferModel(ImageBackbone(model), num_features, num_classes, spec, rules)


def from_module(model: nn.Module, num_classes: int, name: str = "custom", image: ImagePreprocessing | None = None) -> TransferModel:
    """Wrap an already built torchvision-style classifier (e.g. your own ResNet) with a new head.

    The classifier is found by the same dispatcher as for named models; the result cannot be
    rebuilt by :func:`rebuild` unless ``name`` is a torchvision model name.

    Args:
        model: a classification model (modified in place: its classifier becomes Identity).
        num_classes: outputs of the new head.
        name: recorded as ``spec.name``.
        image: preprocessing to record (default: none known).

    Returns:
        The TransferModel (``spec.weights`` is ``"custom"``).

    Example:
        >>> from torchvision.models.resnet import ResNet, BasicBlock
        >>> from_module(ResNet(BasicBlock, [1, 1, 1, 1]), 2).spec.head_name
        'fc'
    """
    spec = ModelSpec(source="torchvision", name=name, modality="image", weights="custom", image=image)
    return _wrap(model, num_classes, spec)


def load(name: str, num_classes: int, *, pretrained: bool = True, weights_path: str | None = None) -> TransferModel:
    """Load ``torchvision:<name>[@WEIGHTS]`` with a new head.

    Args:
        name: model name, optionally ``@`` an enum member name (default ``DEFAULT``).
        num_classes: outputs of the new head.
        pretrained: False builds the same architecture with random weights.
        weights_path: a local state_dict for the source architecture (overrides the hub).

    Returns:
        The TransferModel.

    Example:
        >>> load("resnet18", 3, pretrained=False).spec.head_name
        'fc'
    """
    from torchvision.models import get_model

    name, _, weights_name = name.partition("@")
    _check_name(name)
    member = _weights_member(name, weights_name or "DEFAULT")
    spec = ModelSpec(source="torchvision", name=name, modality="image", image=_preprocessing(member))
    if weights_path is not None:
        model = get_model(name, weights=None)
        head_path, _ = find_classifier(model)
        load_source_weights(model, read_weights_file(weights_path), [head_path], str(weights_path))
        spec.weights, spec.pretrained = f"file:{Path(weights_path).expanduser().resolve()}", True
    elif pretrained:
        model = _pretrained_model(name, member)
        spec.weights, spec.pretrained = f"torchvision:{member.name}", True
    else:
        model = get_model(name, weights=None)
        spec.weights, spec.pretrained = "random", False
    image_size = getattr(model, "image_size", None)
    if isinstance(image_size, int) and image_size != 224:  # ViT SWAG weights change the architecture
        spec.extra["model_kwargs"] = {"image_size": image_size}
    return _wrap(model, num_classes, spec)


def rebuild(spec: ModelSpec) -> TransferModel:
    """The architecture of ``spec`` with random weights, offline (no download)."""
    from torchvision.models import get_model

    _check_name(spec.name)
    model = get_model(spec.name, weights=None, **spec.extra.get("model_kwargs", {}))
    return _wrap(model, spec.num_classes, copy.deepcopy(spec))


def list_infos() -> list[tuple[str, bool, str]]:
    """``(spec, weights cached, note)`` for every torchvision classification model."""
    from torchvision.models import get_model_weights

    infos = []
    for name in _model_names():
        try:
            default = get_model_weights(name).DEFAULT
        except Exception:  # a model without registered weights
            infos.append((f"torchvision:{name}", False, "no pre-trained weights"))
            continue
        path = weights_cache_file(default)
        infos.append((f"torchvision:{name}", path.is_file(), f"{default.name}: {path}"))
    return infos
