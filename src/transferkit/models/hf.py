"""HuggingFace text encoders: ``hf:<hub id or local folder>``.

``AutoModel`` gives token states ``[B, T, H]``; :class:`HFEncoder` pools them into ``[B, H]``
(attention-masked mean, or the first token) and optionally L2-normalises (sentence-transformers).
Hub ids are looked up in the HF cache first (``local_files_only=True``), then downloaded unless
offline (``TRANSFERKIT_OFFLINE``, ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` = 1: then no
connection is attempted at all). A local folder, or a cached copy, that fails to load is reported
with the loader's reason (``ModelLoadError``), never sent to the network.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from transferkit.errors import (
    ConfigError,
    ModelLoadError,
    UnknownModelError,
    WeightsUnavailableError,
)
from transferkit.models.base import TransferModel
from transferkit.models.groups import GroupRules
from transferkit.models.spec import ModelSpec, TextPreprocessing
from transferkit.models.weights import (
    hub_unreachable,
    is_offline,
    load_source_weights,
    network_timeout,
    read_weights_file,
    unavailable_error,
)

__all__ = ["HFEncoder", "load", "rebuild", "group_rules", "resolve_source", "check_name"]

_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
POOLINGS = ("mean", "cls")


class HFEncoder(nn.Module):
    """``AutoModel`` + pooling: tokenizer dict -> ``[B, H]``.

    Args:
        model: a HF ``PreTrainedModel`` whose output has ``last_hidden_state`` ``[B, T, H]``.
        pooling: ``mean`` (attention-masked) or ``cls`` (first token).
        normalize: L2-normalise the pooled vector.
        tokenizer_source: folder or hub id for ``AutoTokenizer.from_pretrained``.
        tokenizer: an already loaded tokenizer (cached).
    """

    def __init__(self, model: nn.Module, pooling: str, normalize: bool, tokenizer_source: str, tokenizer: Any = None) -> None:
        super().__init__()
        self.model = model
        self.pooling = pooling
        self.normalize = normalize
        self.tokenizer_source = tokenizer_source
        self._tokenizer = tokenizer
        # Only pass what the model's forward names (DistilBERT has no token_type_ids).
        params = inspect.signature(model.forward).parameters
        self._input_names = tuple(n for n in _INPUT_NAMES if n in params)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: batch[k] for k in self._input_names if k in batch and batch[k] is not None}
        out = self.model(**inputs)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]  # [B, T, H]
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = batch.get("attention_mask")
            if mask is None:
                mask = torch.ones(hidden.shape[:2], device=hidden.device)
            m = mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # [B, H]
        return F.normalize(pooled, p=2, dim=-1) if self.normalize else pooled

    def tokenizer(self) -> Any:
        """The ``AutoTokenizer`` (loaded once, offline if possible)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = _fetch(AutoTokenizer.from_pretrained, self.tokenizer_source, "tokenizer")
        return self._tokenizer

    def save_assets(self, folder: Path) -> None:
        """Tokenizer files + ``config.json``: enough for :func:`rebuild` offline."""
        self.tokenizer().save_pretrained(str(folder))
        self.model.config.save_pretrained(str(folder))


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\")) or Path(name).expanduser().is_dir()


def resolve_source(name: str) -> tuple[str, bool]:
    """``(identifier, is_local_folder)``; a path that does not exist raises UnknownModelError."""
    if _looks_like_path(name):
        path = Path(name).expanduser()
        if not path.is_dir():
            raise UnknownModelError(
                f"HuggingFace model folder {path} does not exist. Pass an existing folder with "
                f"config.json and tokenizer files, or a hub id such as "
                f"hf:sentence-transformers/all-MiniLM-L6-v2."
            )
        return str(path.resolve()), True
    return name, False


def check_name(name: str) -> None:
    """Raise UnknownModelError for a local folder that does not exist (a hub id is only known
    once it is looked up, which ``load`` does)."""
    resolve_source(name)


def _hf_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide transformers' "Loading weights" bar for local loads (it pollutes CLI stderr)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


#: The files whose presence in the HF cache means that part of a model is cached; if one is
#: there and loading still fails, the cached copy is broken (reported), not "not cached".
_MAIN_FILES: dict[str, tuple[str, ...]] = {
    "config": ("config.json",),
    "tokenizer": ("tokenizer_config.json", "tokenizer.json", "vocab.txt"),
    "weights": ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json"),
}


def _cached_file(ident: str, what: str) -> str | None:
    """The cached main file of ``what`` for hub id ``ident``, or None (reads the disk only)."""
    from huggingface_hub import try_to_load_from_cache

    for filename in _MAIN_FILES[what]:
        try:
            found = try_to_load_from_cache(ident, filename, cache_dir=_hf_cache())
        except Exception:  # an id the hub would reject (HFValidationError): nothing cached
            return None
        if isinstance(found, str):
            return found
    return None


def _cache_path(ident: str, what: str) -> str:
    """Where the main file of ``what`` would be cached (``<cache>/models--org--name/snapshots/*/config.json``)."""
    from huggingface_hub.file_download import repo_folder_name

    names = " or ".join(_MAIN_FILES[what])
    return f"{Path(_hf_cache()) / repo_folder_name(repo_id=ident, repo_type='model')}/snapshots/*/{names}"


def _missing_from_cache(err: BaseException) -> bool:
    """True when ``err`` or one of its causes is huggingface_hub's "not in the local cache"."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, LocalEntryNotFoundError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(err: BaseException) -> str:
    """The loader's message as one short line (transformers' messages span several)."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:400]}{'...' if len(text) > 400 else ''}"


def _load_failed(ident: str, where: str, what: str, err: BaseException) -> ModelLoadError:
    fix = (
        "repair the folder (it needs config.json, tokenizer files and model.safetensors or "
        "pytorch_model.bin, as written by save_pretrained)"
        if where == "folder"
        else f"delete the cached copy ({where}) so that it is downloaded again"
    )
    place = f"the folder {ident}" if where == "folder" else f"the HuggingFace cache ({where})"
    # Only the weights have alternatives: the config and tokenizer are needed in any case.
    others = ", or pass `--weights PATH` for the weights, or use `--no-pretrained`" if what == "weights" else ""
    return ModelLoadError(
        f"The {what} of hf:{ident} is in {place} but fails to load ({_reason(err)}). Fix: {fix}{others}."
    )


def _fetch(fn: Callable[..., Any], ident: str, what: str) -> Any:
    """Call ``fn(ident)`` from a local folder / the HF cache, else download (unless offline).

    Offline (:func:`is_offline`) nothing touches the network, not even a DNS lookup. A local
    folder or a cached copy that is there but fails to load is reported with the loader's
    reason; only files missing from the cache lead to a download.
    """
    if Path(ident).is_dir():
        try:
            with _quiet_loading():
                return fn(ident, local_files_only=True)
        except Exception as err:
            raise _load_failed(ident, "folder", what, err) from err
    cached = _cached_file(ident, what)
    try:
        with _quiet_loading():
            return fn(ident, local_files_only=True)
    except Exception as first:
        if cached is not None and not _missing_from_cache(first):
            raise _load_failed(ident, str(Path(cached).parent), what, first) from first
        return _download(fn, ident, what, first)


def _download(fn: Callable[..., Any], ident: str, what: str, first: BaseException) -> Any:
    """``fn(ident)`` with downloads allowed; each way of failing becomes one error."""
    looked = f"the {what} of {ident!r} in the HuggingFace cache: {_cache_path(ident, what)}"
    if is_offline():
        raise unavailable_error(f"hf:{ident}", looked) from first
    unreachable = hub_unreachable()
    if unreachable is not None:
        raise unavailable_error(f"hf:{ident}", looked, unreachable) from first
    try:
        with network_timeout():
            return fn(ident)
    except Exception as err:
        raise unavailable_error(f"hf:{ident}", looked, err) from err


def group_rules(model: nn.Module) -> GroupRules:
    """Embeddings = stem, one group per transformer layer, leftovers (pooler, norms) last.

    The layers are the ``nn.ModuleList`` holding the most parameters (``encoder.layer``,
    ``layers``, ``transformer.layer``, ``h`` ...); the stem is every parameter registered before
    the first layer parameter (``embeddings.*``, GPT-2's ``wte``/``wpe``). Prefixes are relative to
    the :class:`HFEncoder`.
    """

    def size(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        return [("stem", ["model"])]
    list_name, layers = max(lists, key=lambda item: size(item[1]))
    stem: list[str] = []
    for pname, _ in model.named_parameters():
        if pname.startswith(list_name + "."):
            break
        stem.append(f"model.{pname}")
    rules: GroupRules = [("stem", stem)] if stem else []
    rules += [(f"blocks.{i}", [f"model.{list_name}.{k}"]) for i, (k, _) in enumerate(layers.named_children())]
    return rules


def _check_pooling(pooling: str | None) -> str:
    pooling = pooling or "mean"
    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)} for text models, got {pooling!r}.")
    return pooling


def load(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = True,
    weights_path: str | None = None,
    pooling: str | None = None,
    max_length: int | None = None,
    normalize: bool = False,
) -> TransferModel:
    """Load ``hf:<hub id or folder>`` as a pooled text encoder with a new head.

    Args:
        name: hub id (``sentence-transformers/all-MiniLM-L6-v2``) or a local model folder.
        num_classes: outputs of the new head.
        pretrained: False: the same config with random weights (the config and tokenizer are
            still needed).
        weights_path: a local state_dict for the ``AutoModel`` (no classifier keys).
        pooling: ``mean`` (default) or ``cls``.
        max_length: tokenizer truncation length (default 128).
        normalize: L2-normalise the pooled features.

    Returns:
        The TransferModel (``spec.text`` holds the tokenizer and pooling).

    Example:
        >>> m = load("/path/to/bert_folder", 2)  # doctest: +SKIP
        >>> m(m.tokenizer()(["hello"], return_tensors="pt")).shape  # doctest: +SKIP
        torch.Size([1, 2])
    """
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    pooling = _check_pooling(pooling)
    ident, _local = resolve_source(name)
    config = _fetch(AutoConfig.from_pretrained, ident, "config")
    tokenizer = _fetch(AutoTokenizer.from_pretrained, ident, "tokenizer")
    spec = ModelSpec(source="hf", name=ident, modality="text", extra={"model_type": getattr(config, "model_type", "")})
    if weights_path is not None:
        model = AutoModel.from_config(config)
        load_source_weights(model, read_weights_file(weights_path), [], str(weights_path))
        spec.weights, spec.pretrained = f"file:{Path(weights_path).expanduser().resolve()}", True
    elif pretrained:
        model = _fetch(AutoModel.from_pretrained, ident, "weights")
        spec.weights, spec.pretrained = f"hf:{ident}", True
    else:
        model = AutoModel.from_config(config)
        spec.weights, spec.pretrained = "random", False
    spec.text = TextPreprocessing(tokenizer=ident, max_length=int(max_length or 128), pooling=pooling, normalize=normalize)  # type: ignore[arg-type]
    return _wrap(model.float(), num_classes, spec, ident, tokenizer)


def _wrap(model: nn.Module, num_classes: int, spec: ModelSpec, tok_source: str, tokenizer: Any = None) -> TransferModel:
    assert spec.text is not None  # internal invariant: set by load/rebuild
    encoder = HFEncoder(model, spec.text.pooling, spec.text.normalize, tok_source, tokenizer)
    hidden = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "d_model", 0) or getattr(model.config, "dim", 0))
    if hidden <= 0:
        raise ConfigError(f"Cannot tell the hidden size of {type(model).__name__} from its config.")
    return TransferModel(encoder, hidden, num_classes, spec, group_rules(model))


def rebuild(spec: ModelSpec, assets_dir: str | Path | None = None, fallback_dir: str | None = None) -> TransferModel:
    """The architecture of ``spec`` with random weights, from saved assets, never downloading.

    Args:
        spec: a text ModelSpec.
        assets_dir: the folder written by ``TransferModel.save_assets`` (config + tokenizer).
        fallback_dir: another local folder to use when ``assets_dir`` is None.

    Returns:
        The TransferModel; its tokenizer loads from the same folder.
    """
    from transformers import AutoConfig, AutoModel

    candidates = [str(assets_dir)] if assets_dir is not None else [c for c in (fallback_dir, spec.name) if c]
    errors = []
    for source in candidates:
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=True)
        except Exception as err:  # not a folder, not in the cache
            errors.append(f"{source}: {type(err).__name__}")
            continue
        return _wrap(AutoModel.from_config(config).float(), spec.num_classes, copy.deepcopy(spec), source)
    raise WeightsUnavailableError(
        f"Cannot rebuild text model {spec.spec_string} offline: no config found in "
        f"{'; '.join(errors)}. Pass the assets folder written by TransferModel.save_assets "
        f"(RUN_DIR/assets)."
    )
