"""``source:name`` specs: parse them, load or rebuild the model, list what is loadable.

Each source lives in its own module, imported only when used, so ``import transferkit`` stays
fast and a missing optional library only matters to the source that needs it.
"""

from __future__ import annotations

import fnmatch
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferkit.errors import ConfigError, UnknownModelError
from transferkit.models.base import TransferModel
from transferkit.models.spec import ModelSpec

__all__ = ["SOURCES", "parse_model_spec", "check_model_spec", "load_model", "build_model_from_spec", "ModelInfo", "list_models"]

#: source -> example spec
SOURCES: dict[str, str] = {
    "torchvision": "torchvision:resnet18 (or torchvision:resnet50@IMAGENET1K_V2)",
    "timm": "timm:resnet50.a1_in1k",
    "hf": "hf:sentence-transformers/all-MiniLM-L6-v2 (or hf:/path/to/model_folder)",
    "builtin": "builtin:efficientnet_lite0, builtin:minilm",
}


def _source_module(source: str) -> Any:
    return importlib.import_module(f"transferkit.models.{source}")


def parse_model_spec(spec: str) -> tuple[str, str]:
    """Split ``source:name``.

    A bare path to an existing folder with a ``config.json`` is read as ``hf:<folder>``.

    Args:
        spec: e.g. ``torchvision:resnet18``, ``timm:resnet50.a1_in1k``, ``hf:bert-base-uncased``.

    Returns:
        ``(source, name)``.

    Raises:
        UnknownModelError: empty spec, unknown source or empty name (lists sources and examples).

    Example:
        >>> parse_model_spec("torchvision:resnet18")
        ('torchvision', 'resnet18')
    """
    text = (spec or "").strip()
    source, sep, name = text.partition(":")
    source = source.strip().lower()
    if not sep and text and (Path(text).expanduser() / "config.json").is_file():
        return "hf", text
    if not sep or source not in SOURCES or not name.strip():
        examples = "; ".join(f"{s}: {e}" for s, e in SOURCES.items())
        what = "an empty model spec" if not text else f"model spec {spec!r}"
        raise UnknownModelError(
            f"Cannot load {what}: write it as SOURCE:NAME with SOURCE one of "
            f"{', '.join(SOURCES)}. Examples: {examples}. Run `transferkit models` to list them."
        )
    return source, name.strip()


def check_model_spec(spec: str) -> None:
    """Fail fast on a spec that cannot name a model: an unknown source, or a name its source
    does not know (torchvision, timm, builtin names; a missing ``hf:`` folder). Nothing is
    built, loaded or downloaded; whether the weights can be had is only known when loading.

    Raises:
        UnknownModelError: as :func:`load_model` would for the same spec.

    Example:
        >>> check_model_spec("torchvision:resnet18")
    """
    source, name = parse_model_spec(spec)
    _source_module(source).check_name(name)


def load_model(
    spec: str,
    num_classes: int,
    *,
    pretrained: bool = True,
    weights: str | None = None,
    pooling: str | None = None,
    max_length: int | None = None,
) -> TransferModel:
    """Load a pre-trained model and give it a new ``num_classes`` head.

    Args:
        spec: ``torchvision:<name>[@WEIGHTS]``, ``timm:<name>``, ``hf:<hub id or folder>``,
            ``builtin:efficientnet_lite0`` or ``builtin:minilm``.
        num_classes: outputs of the new head (>= 1).
        pretrained: False: the same architecture with random weights (``spec.weights="random"``).
        weights: path of a local weights file (safetensors or torch state_dict) for the source
            architecture, loaded before the head is replaced (classifier keys ignored).
        pooling: text models: ``mean`` (default) or ``cls``. Ignored for image models.
        max_length: text models: tokenizer truncation length (default 128).

    Returns:
        A :class:`TransferModel` whose ``spec`` says where it came from and how to preprocess.

    Raises:
        UnknownModelError, WeightsUnavailableError, WeightsMismatchError, UnsupportedModelError.

    Example:
        >>> model = load_model("torchvision:resnet18", num_classes=3, pretrained=False)
        >>> model.spec.layer_groups
        ['stem', 'layer1', 'layer2', 'layer3', 'layer4', 'head']
    """
    source, name = parse_model_spec(spec)
    if int(num_classes) < 1:
        raise ConfigError(f"num_classes must be at least 1, got {num_classes}.")
    weights_path = str(weights) if weights is not None else None
    module = _source_module(source)
    if source in ("hf", "builtin"):
        model = module.load(name, int(num_classes), pretrained=pretrained, weights_path=weights_path,
                            pooling=pooling, max_length=max_length)
        return _fit_max_length(model, max_length)
    # Image models: pooling/max_length are text settings and do not apply.
    return module.load(name, int(num_classes), pretrained=pretrained, weights_path=weights_path)


# Model types whose position ids start after the padding index (RoBERTa: padding_idx 1, first
# position 2), so two of max_position_embeddings can never hold a token.
_POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "longformer": 2, "mpnet": 2,
                    "data2vec-text": 2}


def max_tokens(model: TransferModel) -> int | None:
    """The most tokens per text a text model can read: its position embeddings
    (``max_position_embeddings``, less RoBERTa's offset) and its tokenizer's ``model_max_length``
    where that is set; None for image models or when neither says."""
    if model.spec.text is None:
        return None
    config = getattr(getattr(model.backbone, "model", None), "config", None)
    limits = []
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions - _POSITION_OFFSET.get(str(getattr(config, "model_type", "")), 0))
    tokenizer_max = getattr(model.tokenizer(), "model_max_length", None)
    if isinstance(tokenizer_max, int) and 0 < tokenizer_max < 1_000_000:  # unset: a huge sentinel
        limits.append(tokenizer_max)
    return min(limits) if limits else None


def _fit_max_length(model: TransferModel, asked: int | None) -> TransferModel:
    """Check ``--max-length`` against :func:`max_tokens` (a longer text would index past the
    position embeddings mid-training); the default (128) is lowered to the limit instead."""
    limit = max_tokens(model)
    if limit is None or model.spec.text is None or model.spec.text.max_length <= limit:
        return model
    if asked is not None:
        raise ConfigError(
            f"max_length: {model.spec.spec_string} reads at most {limit} tokens per text (its position "
            f"embeddings end there), got {asked}; give --max-length {limit} or less."
        )
    model.spec.text.max_length = limit
    return model


def build_model_from_spec(spec: ModelSpec, assets_dir: str | Path | None = None) -> TransferModel:
    """Rebuild the exact architecture of ``spec`` (head included) with random weights, offline.

    The caller then loads a saved state_dict with ``strict=True``.

    Args:
        spec: a ModelSpec from ``TransferModel.spec`` (or ``model_spec.json``).
        assets_dir: text models: the folder written by ``TransferModel.save_assets``.

    Returns:
        A TransferModel with the same state_dict keys and shapes as the original.

    Example:
        >>> m = load_model("torchvision:resnet18", 3, pretrained=False)
        >>> build_model_from_spec(m.spec).load_state_dict(m.state_dict())
        <All keys matched successfully>
    """
    if spec.source not in SOURCES:
        raise UnknownModelError(f"ModelSpec source {spec.source!r} is not one of {', '.join(SOURCES)}.")
    module = _source_module(spec.source)
    if spec.source in ("hf", "builtin"):
        return module.rebuild(spec, assets_dir)
    return module.rebuild(spec)


@dataclass
class ModelInfo:
    """One loadable model.

    Attributes:
        spec: the spec string for ``load_model`` (``torchvision:resnet18``).
        source: ``torchvision``, ``timm``, ``hf`` or ``builtin``.
        modality: ``image`` or ``text``.
        weights_available: pre-trained weights can be loaded offline right now.
        note: where the weights are looked for, or what the model is.
    """

    spec: str
    source: str
    modality: str
    weights_available: bool
    note: str = ""


def _matcher(pattern: str | None):
    if not pattern:
        return lambda s: True
    pat = pattern.lower()
    if not any(c in pat for c in "*?["):
        return lambda s: pat in s.lower()
    return lambda s: fnmatch.fnmatchcase(s.lower(), pat)


def _cached_hf_repos() -> dict[str, list[str]]:
    """repo id -> file names, from one scan of the HF cache (empty when there is no cache)."""
    try:
        from huggingface_hub import constants, scan_cache_dir

        info = scan_cache_dir(constants.HF_HUB_CACHE)  # read at call time (tests redirect it)
    except Exception:  # CacheNotFound, unreadable cache
        return {}
    repos: dict[str, list[str]] = {}
    for repo in info.repos:
        if getattr(repo, "repo_type", "model") != "model":
            continue
        files = {f.file_name for rev in repo.revisions for f in rev.files}
        repos[repo.repo_id] = sorted(files)
    return repos


def _timm_infos(match: Any, cached: dict[str, list[str]]) -> list[ModelInfo]:
    import timm
    from timm.models import get_pretrained_cfg

    infos = []
    for name in timm.list_models(pretrained=True):
        spec = f"timm:{name}"
        if not match(spec):
            continue
        cfg = get_pretrained_cfg(name)
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        # hf_hub_id may carry a revision ("repo@rev"); the cache is keyed by the repo id
        repo = hub_id.split("@", 1)[0] if hub_id else ""
        infos.append(ModelInfo(spec, "timm", "image", repo in cached, f"hub id {hub_id}" if hub_id else ""))
    return infos


def list_models(pattern: str | None = None) -> list[ModelInfo]:
    """List loadable models and whether their weights are available offline.

    Args:
        pattern: fnmatch-style on the spec string, case-insensitive (``*resnet*``); a bare word
            matches as a substring (``resnet``).

    Returns:
        Builtins (available if their package is installed), torchvision classification models
        (available if the default weights file is in the torch hub cache), timm models with
        pre-trained tags (available if in the HF cache), cached HF text models.

    Example:
        >>> [i.spec for i in list_models("builtin:")]  # doctest: +SKIP
        ['builtin:efficientnet_lite0', 'builtin:minilm']
    """
    from transferkit.models import builtin
    from transferkit.models import torchvision as tv_source

    match = _matcher(pattern)
    infos = [ModelInfo(s, "builtin", mod, ok, note) for s, mod, ok, note in builtin.list_infos() if match(s)]
    infos += [ModelInfo(s, "torchvision", "image", ok, note) for s, ok, note in tv_source.list_infos() if match(s)]
    cached = _cached_hf_repos()
    infos += _timm_infos(match, cached)
    for repo, files in sorted(cached.items()):
        is_text = any(f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt") for f in files)
        if is_text and match(f"hf:{repo}"):
            infos.append(ModelInfo(f"hf:{repo}", "hf", "text", "config.json" in files, "in the HF cache"))
    return infos
