"""timm models: ``timm:<name>[.<pretrained tag>]``.

The classifier is removed with ``reset_classifier(0)``, after which ``model(x)`` returns pooled
features ``[B, num_features]``. Pre-trained weights live in the HuggingFace cache (the model's
``pretrained_cfg.hf_hub_id``); a cached file is handed to timm as ``pretrained_cfg_overlay=
{"file": path}`` so nothing touches the network, else a real download is tried (unless offline:
``TRANSFERKIT_OFFLINE``, ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` = 1).
"""

from __future__ import annotations

import copy
import difflib
import math
import os
from pathlib import Path
from typing import Any

from torch import nn

from transferkit.errors import ModelLoadError, UnknownModelError
from transferkit.models.base import TransferModel
from transferkit.models.groups import GroupRules
from transferkit.models.spec import ImagePreprocessing, ModelSpec
from transferkit.models.weights import (
    hub_unreachable,
    is_offline,
    load_source_weights,
    network_timeout,
    read_weights_file,
    unavailable_error,
)

__all__ = ["load", "rebuild", "wrap_timm_model", "preprocessing", "group_rules", "cached_weights_file",
           "check_name"]

_HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def _unknown_arch(name: str, arch: str) -> UnknownModelError:
    import timm

    close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return UnknownModelError(
        f"Unknown timm model {name!r}.{hint} Run `transferkit models timm:*{arch[:6]}*` for "
        f"names with pre-trained weights (e.g. timm:resnet50.a1_in1k)."
    )


def _unknown_tag(name: str, arch: str) -> UnknownModelError:
    import timm

    tags = timm.list_pretrained(f"{arch}.*")
    return UnknownModelError(
        f"timm model {arch!r} has no pretrained tag in {name!r}; choose one of: "
        f"{', '.join(tags) or '(none: use timm:' + arch + ' with --no-pretrained)'}."
    )


def check_name(name: str) -> None:
    """Raise UnknownModelError unless timm knows ``name`` (and its tag); nothing is built."""
    import timm

    arch, _, tag = name.partition(".")
    if not timm.is_model(arch):
        raise _unknown_arch(name, arch)
    if tag and name not in timm.list_pretrained(name):
        raise _unknown_tag(name, arch)


def _create(name: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` with unknown names and tags turned into UnknownModelError."""
    import timm

    arch = name.split(".", 1)[0]
    if not timm.is_model(arch):
        raise _unknown_arch(name, arch)
    try:
        return timm.create_model(name, **kwargs)
    except RuntimeError as err:
        if "pretrained tag" not in str(err) and "Unknown model" not in str(err):
            raise
        raise _unknown_tag(name, arch) from err


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def cached_weights_file(pretrained_cfg: dict[str, Any]) -> str | None:
    """The cached weights file for a timm pretrained config, or None (never downloads)."""
    hub_id = pretrained_cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        files = [pretrained_cfg["hf_hub_filename"]] if pretrained_cfg.get("hf_hub_filename") else _HUB_FILES
        for filename in files:
            found = try_to_load_from_cache(hub_id, filename)
            if isinstance(found, str) and os.path.isfile(found):
                return found
    url = pretrained_cfg.get("url")
    if url:  # older configs: torch hub cache
        import torch

        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
        if path.is_file():
            return str(path)
    return None


def _expected_file(pretrained_cfg: dict[str, Any]) -> str:
    """Where the weights would be cached, for the error message."""
    hub_id = pretrained_cfg.get("hf_hub_id")
    if not hub_id:
        import torch

        return str(Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(str(pretrained_cfg.get("url"))))
    from huggingface_hub.file_download import repo_folder_name

    folder = Path(_hub_cache()) / repo_folder_name(repo_id=hub_id.split("@", 1)[0], repo_type="model")
    return f"{folder}/snapshots/*/{pretrained_cfg.get('hf_hub_filename') or ' or '.join(_HUB_FILES)}"


def _from_cached_file(name: str, path: str) -> nn.Module:
    """``name`` with the weights of a cached file (timm reads it with safetensors or
    ``torch.load(weights_only=True)``); a file that fails to load is named in the error."""
    try:
        return _create(name, pretrained=True, pretrained_cfg_overlay={"file": path, "source": ""})
    except UnknownModelError:
        raise
    except Exception as err:  # truncated safetensors, pickled objects, wrong shapes
        raise ModelLoadError(
            f"The cached weights file {path} of timm:{name} fails to load ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:400]}). Fix: delete it and run again online so it is "
            f"downloaded again, or pass `--weights PATH`, or use `--no-pretrained`."
        ) from err


def _pretrained(name: str) -> tuple[nn.Module, str]:
    """Create ``name`` with pre-trained weights from the cache, else download; return origin."""
    probe = _create(name, pretrained=False)  # cheap: gives the resolved pretrained_cfg
    cfg = dict(probe.pretrained_cfg)
    origin = f"timm:{cfg.get('hf_hub_id') or cfg.get('url') or name}"
    cached = cached_weights_file(cfg)
    if cached is not None:
        return _from_cached_file(name, cached), origin
    what = f"timm:{name} (hub id {cfg.get('hf_hub_id') or cfg.get('url')})"
    where = _expected_file(cfg)
    if is_offline():
        raise unavailable_error(what, where)
    unreachable = hub_unreachable() if cfg.get("hf_hub_id") else None
    if unreachable is not None:
        raise unavailable_error(what, where, unreachable)
    try:
        with network_timeout():
            return _create(name, pretrained=True), origin
    except UnknownModelError:
        raise
    except Exception as err:  # no network, no such file on the hub, ...
        raise unavailable_error(what, where, err) from err


def preprocessing(model: nn.Module) -> ImagePreprocessing:
    """Eval preprocessing from the model's pretrained config (timm's own resolution rules)."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    crop = int(cfg["input_size"][-1])
    # timm: scale_size = floor(img_size / crop_pct), then centre-crop img_size
    resize = int(math.floor(crop / float(cfg.get("crop_pct") or 1.0)))
    return ImagePreprocessing(
        resize_size=resize, crop_size=crop, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
        interpolation=str(cfg.get("interpolation") or "bilinear"),
    )


def group_rules(model: nn.Module) -> GroupRules:
    """timm's own coarse groups (``group_matcher(coarse=True)``), prefixes relative to the wrapper.

    Group 0 is ``stem``, then ``blocks.0``, ...; a trailing group of ``head.*`` parameters only
    (ConvNeXt's head norm) joins the block before it.
    """
    from timm.models import group_parameters

    grouped = group_parameters(model, model.group_matcher(coarse=True))
    ordered = [names for _, names in sorted(grouped.items())]
    if len(ordered) > 1 and all(n.startswith("head.") for n in ordered[-1]):
        ordered[-2] = ordered[-2] + ordered.pop()
    rules: GroupRules = []
    for i, names in enumerate(ordered):
        rules.append(("stem" if i == 0 else f"blocks.{i - 1}", [f"model.{n}" for n in names]))
    return rules


class TimmBackbone(nn.Module):
    """A timm model after ``reset_classifier(0)``: ``[B, 3, H, W] -> [B, F]``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.model(x)


def wrap_timm_model(model: nn.Module, num_classes: int, spec: ModelSpec) -> TransferModel:
    """Remove the classifier of a timm model and wrap it (used by ``builtin`` too)."""
    classifier = model.pretrained_cfg.get("classifier", "")
    spec.head_name = classifier if isinstance(classifier, str) else ",".join(classifier)
    model.reset_classifier(0)
    # Some families (MobileNetV3) keep a pre-logits conv after pooling: its width is head_hidden_size.
    num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
    if spec.image is None:
        spec.image = preprocessing(model)
    return TransferModel(TimmBackbone(model), num_features, num_classes, spec, group_rules(model))


def load(name: str, num_classes: int, *, pretrained: bool = True, weights_path: str | None = None) -> TransferModel:
    """Load ``timm:<name>`` with a new head.

    Args:
        name: a timm model name, optionally with a pretrained tag (``resnet50.a1_in1k``).
        num_classes: outputs of the new head.
        pretrained: False builds the same architecture with random weights (no network).
        weights_path: a local state_dict for the source architecture (classifier keys ignored).

    Returns:
        The TransferModel.

    Example:
        >>> load("resnet10t", 4, pretrained=False).spec.num_features
        512
    """
    spec = ModelSpec(source="timm", name=name, modality="image", extra={"timm_name": name})
    if weights_path is not None:
        model = _create(name, pretrained=False)
        classifier = model.pretrained_cfg.get("classifier", "")
        ignore = [classifier] if isinstance(classifier, str) else list(classifier)
        load_source_weights(model, read_weights_file(weights_path), ignore, str(weights_path))
        spec.weights, spec.pretrained = f"file:{Path(weights_path).expanduser().resolve()}", True
    elif pretrained:
        model, spec.weights = _pretrained(name)
        spec.pretrained = True
    else:
        model = _create(name, pretrained=False)
        spec.weights, spec.pretrained = "random", False
    return wrap_timm_model(model, num_classes, spec)


def rebuild(spec: ModelSpec) -> TransferModel:
    """The architecture of ``spec`` with random weights, offline."""
    model = _create(spec.extra.get("timm_name", spec.name), pretrained=False)
    return wrap_timm_model(model, spec.num_classes, copy.deepcopy(spec))
