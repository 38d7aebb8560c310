"""Typed, validated configuration for a training run.

A ``TrainConfig`` is what ``transferkit train`` parses its options into and what the run folder
saves as ``config.yaml``: loading that file and training again reproduces the run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

__all__ = ["TrainConfig", "STRATEGIES", "HEAD_SOLVERS", "BN_POLICIES", "BACKENDS", "DEFAULT_BN"]

STRATEGIES = (
    "feature-extraction", "linear-probe", "full", "last-n", "gradual", "discriminative", "lp-ft", "lora",
)
BACKENDS = ("torch", "onnxruntime")
HEAD_SOLVERS = ("adamw", "lbfgs")
BN_POLICIES = ("train", "freeze", "freeze-stats")

# Defaults that depend on the strategy. Feature extraction trains only a linear head on cached
# features, so epochs are cheap and a larger learning rate suits the standardised features; full
# fine-tuning moves pre-trained weights and wants few epochs at a low learning rate.
HEAD_DEFAULTS: dict[str, Any] = {"epochs": 60, "lr": 1e-3, "patience": 10, "weight_decay": 1e-4}
_STRATEGY_DEFAULTS: dict[str, dict[str, Any]] = {
    "feature-extraction": HEAD_DEFAULTS,
    "linear-probe": HEAD_DEFAULTS,
    "full": {"epochs": 10, "lr": 1e-4, "patience": 3, "weight_decay": 0.05},
    "last-n": {"epochs": 10, "lr": 1e-4, "patience": 3, "weight_decay": 0.05},
    # ULMFiT-style: the head alone first, then one group more every `unfreeze_every` epochs.
    "gradual": {"epochs": 12, "lr": 1e-4, "patience": 3, "weight_decay": 0.05},
    # --lr is the head's rate; every group below gets lr_decay times the one above.
    "discriminative": {"epochs": 10, "lr": 1e-3, "patience": 3, "weight_decay": 0.05, "lr_decay": 0.5},
    # Phase 2 only (phase 1 fits the head like feature extraction, then tempers it to
    # probe_energy). Images need a larger rate than full fine-tuning from a random head:
    # EfficientNet-Lite0 + MNIST, 20 per class, tempered probe, test accuracy 0.919 at 1e-4 (still
    # climbing when the schedule ended) and 0.944 at 3e-4 (full fine-tuning: 0.936).
    "lp-ft": {"epochs": 10, "lr": 3e-4, "patience": 3, "weight_decay": 0.05},
    # Text encoders lose their features at that rate: MiniLM + BBC News, 20 per class, tempered
    # probe, test accuracy 0.955 at 3e-4 and 0.967 at 1e-4 (full fine-tuning: 0.964).
    "lp-ft/text": {"lr": 1e-4},
    # LoRA: only the low-rank factors and the head train, so a larger rate than full fine-tuning.
    "lora": {"epochs": 10, "lr": 1e-3, "patience": 3, "weight_decay": 0.01},
}
# BatchNorm policy when --bn is not given: statistics stay pre-trained for every strategy that
# trains backbone layers (small target batches give noisy statistics from another domain).
DEFAULT_BN = "freeze-stats"


def _help(text: str, default: Any = None, **kw: Any) -> Any:
    """A dataclass field whose help text lives in its metadata (shown by the CLI and the docs)."""
    if "default_factory" in kw:
        return field(metadata={"help": text}, **kw)
    return field(default=default, metadata={"help": text})


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    ``None`` for ``epochs``, ``lr``, ``patience`` or ``weight_decay`` means "the strategy's
    default"; :meth:`resolved` fills them in, and the run folder stores the resolved values.

    Example:
        >>> cfg = TrainConfig(model="builtin:efficientnet_lite0", data="builtin:mnist").resolved()
        >>> cfg.strategy, cfg.epochs
        ('feature-extraction', 60)
    """

    model: str = _help("Model spec, e.g. builtin:efficientnet_lite0, torchvision:resnet18, hf:<id>.")
    data: str = _help("Data spec: folder of class folders, CSV/TSV/JSONL file, or builtin:NAME.")
    strategy: str = _help(
        "Adaptation strategy: " + ", ".join(STRATEGIES) + ".", "feature-extraction"
    )
    out: str | None = _help("Run folder to write (default: runs/<model>-<strategy>-<time>).")
    weights: str | None = _help("Local weights file (safetensors or state_dict) for the backbone.")
    pretrained: bool = _help("Start from pre-trained weights (False: same architecture, random).", True)
    pooling: str | None = _help("Text models: token pooling, mean or cls (default: the model's).")
    max_length: int | None = _help("Text models: maximum tokens per text (default: 128).")
    epochs: int | None = _help("Maximum epochs (default depends on the strategy).")
    batch_size: int | None = _help(
        "Mini-batch size (default: 32, down to 8 on small training sets so an epoch has >= 8 steps)."
    )
    lr: float | None = _help("Peak learning rate of the backbone (the head gets head_lr_scale x).")
    head_lr_scale: float = _help("Full fine-tuning: the new head's learning rate multiplier.", 10.0)
    weight_decay: float | None = _help("AdamW weight decay (default depends on the strategy).")
    warmup_fraction: float = _help("Share of the optimisation steps used for linear warmup.", 0.05)
    grad_clip: float = _help("Clip the gradient norm to this value (0 disables).", 1.0)
    label_smoothing: float | None = _help(
        "Label smoothing for the cross-entropy loss (default 0)."
    )
    patience: int | None = _help("Early stopping: epochs without validation improvement.")
    head_solver: str = _help("Feature extraction: head trained by adamw epochs or lbfgs sweep.", "adamw")
    probe_energy: float = _help(
        "lp-ft: before fine-tuning, the probe's logits are divided by the temperature that brings "
        "its training loss to this share of ln(C), a uniform guess's loss. A probe that fits a "
        "few-shot split exactly leaves no gradient to adapt the backbone; 0 keeps it as fitted.", 0.5
    )
    seed: int = _help("Random seed for splits, sampling, initialisation and batching.", 0)
    per_class: int | None = _help("Few-shot: keep at most N training examples per class.")
    val_fraction: float = _help("Share of the data held out for validation (if no val split).", 0.15)
    test_fraction: float = _help("Share of the data held out for testing (if no test split).", 0.15)
    last_n: int = _help("last-n: how many of the top layer groups (below the head) train.", 2)
    unfreeze_every: int = _help("gradual: epochs between unfreezing steps (K).", 1)
    gradual_groups: int | None = _help("gradual: at most this many backbone groups get unfrozen.")
    lr_decay: float | None = _help(
        "Discriminative rates: each layer group gets this times the rate of the group above "
        "(--lr is the head's rate). Combines with full, last-n and gradual."
    )
    group_lrs: str | None = _help(
        "Discriminative rates given explicitly, one per layer group from stem to head, e.g. "
        "1e-5,1e-5,1e-4,1e-4,1e-3."
    )
    bn: str | None = _help(
        "BatchNorm policy: train (statistics update), freeze-stats (statistics fixed, affine "
        "trains; the default), freeze (eval mode, affine frozen). Frozen groups are always eval."
    )
    time_budget: float | None = _help("Stop training after the epoch that passes this many seconds.")
    overfit_gap: float = _help(
        "Warn when train accuracy exceeds validation accuracy by more than this while "
        "validation stalls.", 0.15
    )
    augment: bool = _help("Light training augmentation for images (end-to-end strategies only).", False)
    text_column: str = _help("Column holding the text in CSV/TSV/JSONL data.", "text")
    label_column: str = _help("Column holding the label.", "label")
    path_column: str = _help("Column holding image paths in a CSV of images.", "path")
    device: str = _help("cpu, cuda, cuda:N or auto.", "auto")
    amp: bool = _help("Mixed precision (bfloat16 autocast) where the device supports it.", True)
    num_workers: int = _help("DataLoader worker processes for image decoding.", 0)
    feature_cache_mb: int = _help("Feature cache held in memory up to this size, then on disk.", 2048)
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

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model: a model spec is required, e.g. --model builtin:efficientnet_lite0.")
        if not self.data:
            raise ConfigError("data: a data spec is required, e.g. --data builtin:mnist or a folder.")
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"strategy: unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}."
            )
        if self.head_solver not in HEAD_SOLVERS:
            raise ConfigError(
                f"head_solver: {self.head_solver!r} is not one of {', '.join(HEAD_SOLVERS)}."
            )
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend: {self.backend!r} is not one of {', '.join(BACKENDS)}.")
        if self.bn not in (None, *BN_POLICIES):
            raise ConfigError(f"bn: {self.bn!r} is not one of {', '.join(BN_POLICIES)}.")
        if self.lr_decay is not None and not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay: must be in (0, 1], got {self.lr_decay!r}.")
        self.parsed_group_lrs()  # validates the list
        if self.pooling not in (None, "mean", "cls"):
            raise ConfigError(f"pooling: {self.pooling!r} is not one of mean, cls.")
        if self.device != "auto" and not str(self.device).startswith(("cpu", "cuda", "mps")):
            raise ConfigError(f"device: {self.device!r} is not one of auto, cpu, cuda, cuda:N, mps.")
        self._check_positive("batch_size", "epochs", "max_length", "per_class", "patience", "lr",
                             "last_n", "unfreeze_every", "gradual_groups", "time_budget",
                             "lora_rank", "lora_alpha")
        self._check_range("lora_dropout", 0.0, 0.9)
        self._check_range("val_fraction", 0.0, 0.9)
        self._check_range("test_fraction", 0.0, 0.9)
        self._check_range("warmup_fraction", 0.0, 0.9)
        if not 0.0 <= self.probe_energy < 1.0:
            raise ConfigError(f"probe_energy: must be in [0, 1) (a share of ln(C); 0 disables "
                              f"tempering the probe), got {self.probe_energy!r}.")
        if self.label_smoothing is not None:
            self._check_range("label_smoothing", 0.0, 0.9)
        if self.val_fraction + self.test_fraction >= 0.95:
            raise ConfigError("val_fraction + test_fraction must leave data to train on (< 0.95).")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ConfigError("weight_decay: must be >= 0.")
        if self.grad_clip < 0 or self.num_workers < 0 or self.feature_cache_mb < 0:
            raise ConfigError("grad_clip, num_workers and feature_cache_mb must be >= 0.")

    def _check_positive(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name}: must be a positive number, got {value!r}.")

    def _check_range(self, name: str, low: float, high: float) -> None:
        value = getattr(self, name)
        if not low <= value <= high:
            raise ConfigError(f"{name}: must be between {low} and {high}, got {value!r}.")

    def parsed_group_lrs(self) -> list[float] | None:
        """``group_lrs`` as floats (``None`` when not given)."""
        if self.group_lrs is None:
            return None
        try:
            values = [float(v) for v in str(self.group_lrs).split(",") if v.strip()]
        except ValueError:
            raise ConfigError(
                f"group_lrs: {self.group_lrs!r} is not a comma-separated list of numbers; write "
                "one learning rate per layer group, e.g. 1e-5,1e-4,1e-3."
            ) from None
        if not values or any(v <= 0 for v in values):
            raise ConfigError(f"group_lrs: every learning rate must be positive, got {self.group_lrs!r}.")
        return values

    @property
    def discriminative(self) -> bool:
        """Whether layer-wise learning rates apply (explicit list or a decay factor)."""
        return self.group_lrs is not None or self.lr_decay is not None

    def resolved(self, modality: str | None = None) -> "TrainConfig":
        """A copy with the strategy's defaults filled in for every ``None`` hyperparameter.

        ``modality`` ("image" or "text") picks the strategy's per-modality defaults where it
        has any (``lp-ft`` on text uses a lower rate).
        """
        defaults = dict(_STRATEGY_DEFAULTS[self.strategy])
        defaults.update(_STRATEGY_DEFAULTS.get(f"{self.strategy}/{modality}", {}))
        if self.discriminative and self.strategy != "discriminative":
            defaults["lr"] = 1e-3  # with layer-wise rates --lr is the head's rate
        updates = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        if self.strategy == "linear-probe":
            updates["head_solver"] = "lbfgs"
        if self.bn is None:
            updates["bn"] = DEFAULT_BN
        if self.label_smoothing is None and "label_smoothing" not in updates:
            updates["label_smoothing"] = 0.0
        return dataclasses.replace(self, **updates)

    def with_data_defaults(self, n_train: int) -> "TrainConfig":
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
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from a dict, rejecting unknown keys with the list of known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"Unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}."
            )
        return cls(**data)

    def save(self, path: str | Path) -> None:
        """Write as YAML, atomically."""
        from .train.runfolder import atomic_write_text  # lazy: train imports config

        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """Read a YAML (or JSON) config written by :meth:`save` or by hand."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"Config file {path} does not exist; give the path to a config.yaml.")
        except yaml.YAMLError as exc:
            raise ConfigError(f"Config file {path} is not valid YAML ({exc}); fix or regenerate it.")
        if not isinstance(data, dict):
            raise ConfigError(f"Config file {path} must hold a mapping of option names to values.")
        return cls.from_dict(data)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Help text of every field, for the CLI and the docs."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
