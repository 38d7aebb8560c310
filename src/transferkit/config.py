"""Typed, validated configuration: ``DataOptions`` (which data, split how) and ``TrainConfig``
(a whole training run: the data options plus model, strategy and hyperparameters).

A ``TrainConfig`` is what ``transferkit train`` parses its options into and what the run folder
saves as ``config.yaml``: loading that file and training again reproduces the run. Every field
is checked against its annotation when a config is built (Python, CLI or YAML alike), so a
wrong type is a one-paragraph ``ConfigError`` naming the field, never a ``TypeError`` later.

Strategy names and defaults, and feature backends, are not listed here: ``TrainConfig`` asks
the registries (``transferkit.registry``), which the strategy classes and backends fill.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import numbers
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import ConfigError
from .io.atomic import atomic_write_text
from .registry import FEATURE_BACKENDS, STRATEGIES

__all__ = ["DataOptions", "TrainConfig", "HeadSolver", "ClassWeights", "BnPolicy", "Pooling", "ImageSize", "check_fractions",
           "check_device_name", "MAX_IMAGE_SIZE"]

HeadSolver = Literal["adamw", "lbfgs"]
ClassWeights = Literal["none", "balanced"]
BnPolicy = Literal["train", "freeze", "freeze-stats"]
Pooling = Literal["mean", "cls"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune"]  # torch.compile's modes
ImageSize = Union[int, Literal["auto", "native"]]


def _help(text: str, default: Any = None) -> Any:
    """A dataclass field whose help text lives in its metadata (shown by the CLI and the docs)."""
    return field(default=default, metadata={"help": text})


# -- checking a value against its annotation -------------------------------------------------------
def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    return {int: "a whole number", float: "a number", str: "text", bool: "true or false"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """``(fits, value)``: whether ``value`` fits the annotation ``tp``, and the value to store
    (ints become floats for float fields; a YAML string like ``1e-4``, which YAML 1.1 reads as
    text, becomes a float)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for member in typing.get_args(tp):
            fits, out = _coerce(value, member)
            if fits:
                return True, out
        return False, value
    if origin is Literal:
        return value in typing.get_args(tp), value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        fits = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        return fits, int(value) if fits and type(value) is not int else value
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return False, value
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), (
            float(value) if isinstance(value, (int, float)) else value)
    if tp is str:
        return isinstance(value, str), value
    if origin is list:  # list[float]
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            return False, value
        pairs = [_coerce(v, item) for v in value]
        return all(ok for ok, _ in pairs), [v for _, v in pairs]
    return True, value


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _non_finite(value: Any) -> bool:
    """Whether ``value`` is NaN or infinite, alone or inside a list (``group_lrs``)."""
    if isinstance(value, list):
        return any(_non_finite(v) for v in value)
    if isinstance(value, str):  # "nan" and "inf" in a YAML file are text to YAML 1.1
        try:
            value = float(value)
        except ValueError:
            return False
    return isinstance(value, float) and not math.isfinite(value)


def _check_types(obj: Any) -> None:
    """Check (and normalise) every field of a config dataclass against its annotation."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        fits, out = _coerce(value, _hints(type(obj))[f.name])
        if not fits and _non_finite(out):
            raise ConfigError(f"{f.name}: expected a finite number, got {value!r}; NaN and infinity are "
                              "not settings: give an ordinary number (`transferkit train --help` lists "
                              "each option's range).")
        if not fits:
            raise ConfigError(f"{f.name}: expected {_describe(_hints(type(obj))[f.name])}, got {value!r}.")
        if out is not value:
            object.__setattr__(obj, f.name, out)


def _check_positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and value <= 0:
            raise ConfigError(f"{name}: must be a positive number, got {value!r}.")


def _check_cache_dir(value: str | None) -> None:
    """``cache_dir`` must be a folder, or a path where one can be made, and writable: checked
    before a run folder exists, not when the feature cache first spills."""
    if value is None:
        return
    path = Path(value).expanduser()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"cache_dir: {existing} is a file, not a folder; give --cache-dir a folder "
                          f"(it is made if missing) for the feature cache's spill file.")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cache_dir: {existing} is not writable; give --cache-dir a folder you can "
                          f"write to for the feature cache's spill file.")


def _check_range(obj: Any, name: str, low: float, high: float) -> None:
    value = getattr(obj, name)
    if value is not None and not low <= value <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}, got {value!r}.")


def check_fractions(val_fraction: Any, test_fraction: Any) -> None:
    """Raise ``ConfigError`` unless both fractions are in [0, 0.9] and leave data for training.

    Example:
        >>> check_fractions(0.15, 0.15)
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 0.9:
            raise ConfigError(f"{name} must be a number from 0 to 0.9, got {value!r}. Use e.g. 0.15 "
                              "for 15% of the data.")
    if val_fraction + test_fraction >= 1:
        raise ConfigError(
            f"val_fraction + test_fraction must be below 1 so that data is left for training, "
            f"got {val_fraction} + {test_fraction}. Lower one of them (the defaults are 0.15 each)."
        )


#: Largest ``image_size`` in pixels: a [B, 3, 4096, 4096] float batch is already 200 MB per image.
MAX_IMAGE_SIZE = 4096
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device_name(name: Any) -> str:
    """Raise ``ConfigError`` unless ``name`` is ``auto``, ``cpu``, ``mps``, ``cuda`` or
    ``cuda:N``; whether that device is present is checked when it is used
    (``train.device.resolve_device``), because a saved config must load on any machine.

    Example:
        >>> check_device_name("cuda:1")
        'cuda:1'
    """
    if not isinstance(name, str) or not _DEVICE.fullmatch(name.strip()):
        raise ConfigError(f"device: {name!r} is not a device; use auto, cpu, cuda, cuda:N (N a GPU "
                          "number from 0, as nvidia-smi lists them) or mps.")
    return name.strip()


def _parse_group_lrs(value: Any) -> Any:
    """``"1e-5,1e-4"`` (CLI, schema-1 YAML) -> ``[1e-05, 0.0001]``; lists pass through."""
    if not isinstance(value, str):
        return value
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(
            f"group_lrs: {value!r} is not a comma-separated list of numbers; write one learning "
            "rate per layer group, e.g. 1e-5,1e-4,1e-3."
        ) from None


#: PIL's own default cap on pixels per image (about 9,459 x 9,459), set explicitly by transferkit.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


@dataclass
class DataOptions:
    """Which labelled data, and how it is split and sampled: the same options give the same
    splits in ``train``, ``evaluate``, export verification, ``recommend`` and the explorers.

    Example:
        >>> from transferkit.data import load_data
        >>> bundle = load_data(DataOptions("builtin:digits", per_class=10, seed=1))  # doctest: +SKIP
        >>> len(bundle.train)  # doctest: +SKIP
        100
    """

    data: str = _help("Data spec: folder of class folders, CSV/TSV/JSONL file, or builtin:NAME.")
    seed: int = _help("Random seed for splits, sampling, initialisation and batching.", 0)
    val_fraction: float = _help("Share of the data held out for validation (if no val split).", 0.15)
    test_fraction: float = _help("Share of the data held out for testing (if no test split).", 0.15)
    per_class: int | None = _help("Few-shot: keep at most N training examples per class.")
    text_column: str = _help("Column holding the text in CSV/TSV/JSONL data.", "text")
    label_column: str = _help("Column holding the label.", "label")
    path_column: str = _help("Column holding image paths in a CSV of images.", "path")
    image_size: ImageSize | None = _help(
        "Image models: input size. native (the model's own preprocessing), auto (twice the data's "
        "median image side, a multiple of 32, at most native) or pixels. Default: native for "
        "training, auto for the end-to-end points of `efficiency`."
    )
    skip_bad_rows: bool = _help(
        "Skip (and count) CSV/TSV rows with more fields than the header instead of stopping.", False)
    max_image_pixels: int = _help(
        "The most pixels an image may have (width x height); larger ones are skipped as too large "
        "(a decompression-bomb guard; PIL's default).", DEFAULT_MAX_IMAGE_PIXELS)
    max_bad_fraction: float = _help(
        "The largest share of images that may be skipped as unreadable or too large; above it the "
        "data is refused.", 0.05)

    def __post_init__(self) -> None:
        if isinstance(self.image_size, str) and self.image_size.strip().isdigit():  # "64" from the CLI
            self.image_size = int(self.image_size)
        if not self.data:
            raise ConfigError("data: a data spec is required, e.g. --data builtin:mnist or a folder.")
        check_fractions(self.val_fraction, self.test_fraction)
        _check_types(self)
        if self.seed < 0:
            raise ConfigError(f"seed must be a whole number >= 0, got {self.seed!r}.")
        if self.per_class is not None and self.per_class < 1:
            raise ConfigError(f"per_class must be a whole number of at least 1 (training examples kept per "
                              f"class), got {self.per_class!r}. Leave it unset to train on all the data.")
        if isinstance(self.image_size, int) and not 16 <= self.image_size <= MAX_IMAGE_SIZE:
            raise ConfigError(f"image_size: auto, native or a whole number of pixels from 16 to {MAX_IMAGE_SIZE}, "
                              f"got {self.image_size!r}.")
        if self.max_image_pixels < 1:
            raise ConfigError(f"max_image_pixels: a whole number of pixels >= 1, got {self.max_image_pixels!r}.")
        if not 0 <= self.max_bad_fraction <= 1:
            raise ConfigError(f"max_bad_fraction must be between 0 and 1, got {self.max_bad_fraction!r}.")

    @property
    def data_options(self) -> DataOptions:
        """The data options alone (a ``TrainConfig`` without its training settings)."""
        return DataOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(DataOptions)})


def _upgraded(data: dict[str, Any]) -> dict[str, Any]:
    """A config of an earlier version, in today's keys: ``amp`` (a bool: bfloat16 autocast on
    CUDA only) became ``precision``."""
    if "amp" not in data:
        return data
    data = dict(data)
    amp = data.pop("amp")
    data.setdefault("precision", "auto" if amp else "fp32")
    return data


@dataclass
class TrainConfig(DataOptions):
    """Everything that defines a training run: :class:`DataOptions` plus model and training.

    ``None`` for ``epochs``, ``lr``, ``patience``, ``weight_decay`` and the other strategy
    settings means "the strategy's default"; :meth:`resolved` fills them in from the strategy
    class, and the run folder stores the resolved values.

    Example:
        >>> cfg = TrainConfig(model="builtin:efficientnet_lite0", data="builtin:mnist").resolved()
        >>> cfg.strategy, cfg.epochs
        ('feature-extraction', 60)
    """

    model: str = _help("Model spec, e.g. builtin:efficientnet_lite0, torchvision:resnet18, hf:<id>.")
    strategy: str = _help(
        "Adaptation strategy (`transferkit strategies` lists them).", "feature-extraction"
    )
    out: str | None = _help("Run folder to write (default: runs/<model>-<strategy>-<time>).")
    weights: str | None = _help("Local weights file (safetensors or state_dict) for the backbone.")
    pretrained: bool = _help("Start from pre-trained weights (False: same architecture, random).", True)
    pooling: Pooling | None = _help("Text models: token pooling, mean or cls (default: the model's).")
    max_length: int | None = _help("Text models: maximum tokens per text (default: 128).")
    epochs: int | None = _help("Maximum epochs (default depends on the strategy).")
    batch_size: int | None = _help(
        "Mini-batch size (default: 32, down to 8 on small training sets so an epoch has >= 8 steps)."
    )
    lr: float | None = _help("Peak learning rate of the backbone (the head gets head_lr_scale x).")
    head_lr_scale: float | None = _help(
        "The new head's learning rate multiplier (default: 10; lp-ft: 1, its head is already fitted).")
    weight_decay: float | None = _help("AdamW weight decay (default depends on the strategy).")
    warmup_fraction: float | None = _help(
        "Share of the optimisation steps used for linear warmup (default: 0.05; lp-ft: more).")
    grad_clip: float = _help("Clip the gradient norm to this value (0 disables).", 1.0)
    label_smoothing: float | None = _help("Label smoothing for the cross-entropy loss (default 0).")
    patience: int | None = _help("Early stopping: epochs without validation improvement.")
    class_weights: ClassWeights = _help(
        "none, or balanced: weight each class's loss by N / (C x its training examples), and score "
        "validation (early stopping, the head's selection) with the same weights, i.e. on balanced "
        "accuracy; for imbalanced classes where the small ones matter.", "none")
    head_solver: HeadSolver = _help(
        "Head on cached features: lbfgs (full-batch logistic regression, L2 chosen) or adamw "
        "(mini-batch epochs, epoch count chosen).", "lbfgs")
    refit: bool = _help(
        "Head on cached features: once its L2 or epoch count is chosen (by k-fold CV when the "
        "validation split is tiny), fit it again on train + validation.", True)
    probe_energy: float = _help(
        "lp-ft: before fine-tuning, the probe's logits are divided by the temperature that brings "
        "its training loss to this share of ln(C), a uniform guess's loss. A probe that fits a "
        "few-shot split exactly leaves no gradient to adapt the backbone; 0 keeps it as fitted.", 0.5
    )
    wise_alpha: float = _help(
        "lp-ft: keep the probe's weights plus this share of the change fine-tuning made to them "
        "(WiSE-FT weight-space ensembling, one model at no inference cost); 1 keeps the fine-tuned "
        "weights, 0 the probe. 0.75 lifted the suite's rows where LP-FT trails (faces) but cost "
        "where fine-tuning gains most (trec): docs/defaults.md.", 1.0
    )
    last_n: int = _help("last-n: how many of the top layer groups (below the head) train.", 2)
    unfreeze_every: int = _help("gradual: epochs between unfreezing steps (K).", 1)
    gradual_groups: int | None = _help("gradual: at most this many backbone groups get unfrozen.")
    lr_decay: float | None = _help(
        "Discriminative rates: each layer group gets this times the rate of the group above "
        "(--lr is the head's rate). Combines with full, last-n and gradual."
    )
    group_lrs: list[float] | None = _help(
        "Discriminative rates given explicitly, one per layer group from stem to head, e.g. "
        "1e-5,1e-5,1e-4,1e-4,1e-3."
    )
    bn: BnPolicy | None = _help(
        "BatchNorm policy: train (statistics update), freeze-stats (statistics fixed, affine "
        "trains; the default), freeze (eval mode, affine frozen). Frozen groups are always eval."
    )
    time_budget: float | None = _help("Stop training after the epoch that passes this many seconds.")
    overfit_gap: float = _help(
        "Warn when train accuracy exceeds validation accuracy by more than this while "
        "validation stalls.", 0.15
    )
    augment: bool = _help("Light training augmentation for images (end-to-end strategies only).", False)
    device: str = _help("cpu, cuda, cuda:N or auto.", "auto")
    precision: Precision = _help(
        "Arithmetic precision of training and encoding: auto = bfloat16 autocast on CUDA, and on CPUs "
        "with native bfloat16 (AVX-512 BF16 or AMX) for transformers (convolutional models stay "
        "fp32 there: measured no faster and less accurate), fp32 elsewhere; fp16 "
        "(CUDA only) scales the loss.",
        "auto")
    num_workers: int | None = _help(
        "DataLoader worker processes for decoding (default: none on a CPU, where they would take "
        "cores from the arithmetic; on CUDA the cores shared out per process, up to 8, with "
        "pinned memory and prefetching).")
    compile: bool = _help(
        "torch.compile the model for training and for encoding features: the first steps take "
        "longer (compilation), the rest run faster; for long runs, mainly on GPUs.", False)
    compile_mode: CompileMode = _help(
        "torch.compile mode of the training steps; any but default implies --compile. "
        "reduce-overhead replays each step's kernels from CUDA graphs, one launch instead of one "
        "per kernel (CUDA only; on an H200 it made a LoRA step of BERT-base cost no more than "
        "full fine-tuning's; more GPU memory, and a graph per batch shape); max-autotune also "
        "searches kernel configurations (long compilation). Feature encoding, one pass, keeps "
        "the default mode.", "default")
    feature_cache_mb: int = _help(
        "Feature cache: the cached features of all splits together are held in memory up to "
        "this many MB; a split past it is memory-mapped from a file on disk.", 2048
    )
    decoded_cache_mb: int = _help(
        "Decoded-image cache: every image is decoded and resized once, kept in memory up to this "
        "many MB (all splits together) and past it in a memory-mapped file on disk; later epochs "
        "read no image file. 0 keeps everything on disk.", 2048
    )
    cache_dir: str | None = _help(
        "Folder for the feature cache's spill file (default: the run folder's disk, never a "
        "RAM-backed temporary folder). The file is deleted as soon as it is opened."
    )
    backend: str = _help(
        "Frozen-backbone feature extraction engine: torch, or onnxruntime (the backbone is "
        "exported once and run in ONNX Runtime).", "torch"
    )
    lora_rank: int = _help("lora: rank r of the update B A (B: d x r, A: r x k).", 8)
    lora_alpha: float = _help("lora: scale numerator; the update is scaled by alpha / r.", 16.0)
    lora_dropout: float = _help("lora: dropout on the input of the low-rank path.", 0.0)
    lora_targets: str | None = _help(
        "lora: comma-separated module-name patterns, or all-linear (default: attention query and "
        "value for HF encoders, every Linear and Conv2d otherwise)."
    )
    tensorboard: bool = _help("Also write TensorBoard event files to RUN/tensorboard.", False)
    checkpoint_every: float | None = _help(
        "Seconds of training between checkpoints (what --resume continues from). A phase's first "
        "and last end-to-end epochs always write one; 0 writes one after every epoch; by default "
        "the next is due after 20 times as long as the last took to write (weights, best "
        "weights and optimizer state, flushed to disk: about 1.5 s for MiniLM on a 2-core CPU), "
        "so checkpoints cost at most a twentieth of the run. A kill loses the training since.")

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model: a model spec is required, e.g. --model builtin:efficientnet_lite0.")
        self.group_lrs = _parse_group_lrs(self.group_lrs)
        super().__post_init__()
        STRATEGIES.get(self.strategy)  # an unknown name lists the registered strategies
        FEATURE_BACKENDS.get(self.backend)
        _check_cache_dir(self.cache_dir)
        if self.lr_decay is not None and not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay: must be in (0, 1], got {self.lr_decay!r}.")
        if self.group_lrs is not None and (not self.group_lrs or any(v <= 0 for v in self.group_lrs)):
            raise ConfigError(f"group_lrs: every learning rate must be positive, got {self.group_lrs!r}.")
        self.device = check_device_name(self.device)
        if self.compile_mode != "default":  # asking for a mode is asking to compile (as transformers' Trainer)
            self.compile = True
        _check_positive(self, "batch_size", "epochs", "max_length", "patience", "lr", "head_lr_scale", "last_n",
                        "unfreeze_every", "gradual_groups", "time_budget", "lora_rank", "lora_alpha")
        _check_range(self, "overfit_gap", 0.0, 1.0)  # a difference of two accuracies
        _check_range(self, "lora_dropout", 0.0, 0.9)
        _check_range(self, "warmup_fraction", 0.0, 0.9)
        _check_range(self, "label_smoothing", 0.0, 0.9)
        _check_range(self, "wise_alpha", 0.0, 1.0)
        if not 0.0 <= self.probe_energy < 1.0:
            raise ConfigError(f"probe_energy: must be in [0, 1) (a share of ln(C); 0 disables "
                              f"tempering the probe), got {self.probe_energy!r}.")
        for name in ("weight_decay", "grad_clip", "num_workers", "feature_cache_mb", "decoded_cache_mb",
                     "checkpoint_every"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)!r}.")

    @property
    def discriminative(self) -> bool:
        """Whether layer-wise learning rates apply (explicit list or a decay factor)."""
        return self.group_lrs is not None or self.lr_decay is not None

    def resolved(self, modality: str | None = None) -> TrainConfig:
        """A copy with the strategy's defaults filled in for every ``None`` setting.

        ``modality`` ("image" or "text") picks the strategy's per-modality defaults where it
        has any (``lp-ft`` on text uses a lower rate). The strategy class decides: see
        ``transferkit.strategies.Strategy.resolve_config``.
        """
        return STRATEGIES.get(self.strategy).resolve_config(self, modality)

    def with_data_defaults(self, n_train: int) -> TrainConfig:
        """Fill ``batch_size`` from the training-set size if it was not given.

        Few-shot runs need enough optimisation steps: 40 examples in batches of 32 would give
        the new head 2 updates an epoch.
        """
        if self.batch_size is not None:
            return self
        return dataclasses.replace(self, batch_size=int(min(32, max(8, n_train // 8))))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict, rejecting unknown keys with the closest known key suggested."""
        known = [f.name for f in dataclasses.fields(cls)]
        data = _upgraded(data)
        unknown = sorted(set(data) - set(known))
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), known, n=1)
                hints.append(f"{key} (did you mean {close[0]}?)" if close else str(key))
            raise ConfigError(
                f"Unknown config key(s) {', '.join(hints)}; known keys: {', '.join(sorted(known))}."
            )
        return cls(**data)

    def save(self, path: str | Path) -> None:
        """Write as YAML, atomically."""
        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a YAML (or JSON) config written by :meth:`save` or by hand."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"Config file {path} does not exist; give the path to a config.yaml.") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"Config file {path} is not valid YAML ({exc}); fix or regenerate it.") from None
        if not isinstance(data, dict):
            raise ConfigError(f"Config file {path} must hold a mapping of option names to values.")
        return cls.from_dict(data)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Help text of every field, for the CLI and the docs."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
