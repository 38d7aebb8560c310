"""``train(config)``: load model and data, adapt with a strategy, write the run folder."""

from __future__ import annotations

import dataclasses
import logging
import re
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import surgery
from ..config import TrainConfig
from ..data import DataBundle, load_data
from ..errors import ConfigError, DataError, RunFolderError
from ..models import TransferModel, load_model
from ..strategies import Strategy, get_strategy
from . import runfolder as rf
from .device import inference_batch_size, prepare_model_layout, resolve_device, seed_everything
from .features import CachedFeatures, extract_features
from .head import fit_head_adamw, fit_head_lbfgs
from .loaders import make_indexed_loader, make_loader
from .loop import LoopSettings, fit, predict_logits
from .metrics import classification_metrics
from .plots import close, learning_curve_figure
from .progress import Progress

log = logging.getLogger("transferkit")


@dataclass
class RunResult:
    """What ``train`` returns: the run folder and the test metrics written into it."""

    run_dir: Path
    test_metrics: dict[str, Any]
    config: TrainConfig


def default_run_dir(cfg: TrainConfig) -> Path:
    """``runs/<model>-<strategy>-<YYYYmmdd-HHMMSS>`` under the current folder."""
    model = re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.model.split(":", 1)[-1].rstrip("/").split("/")[-1])
    return Path("runs") / f"{model}-{cfg.strategy}-{time.strftime('%Y%m%d-%H%M%S')}"


def absolute_local_paths(cfg: TrainConfig) -> TrainConfig:
    """Local data and weights paths made absolute, so the saved config works from any folder."""
    updates = {}
    for name in ("data", "weights"):
        value = getattr(cfg, name)
        if value and not value.startswith("builtin:") and Path(value).expanduser().exists():
            updates[name] = str(Path(value).expanduser().resolve())
    return dataclasses.replace(cfg, **updates)


def _prepare_run_dir(path: Path) -> Path:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunFolderError(
            f"Run folder {path} already exists and is not empty; nothing was overwritten. Choose "
            "another --out, or remove that folder first."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _settings(cfg: TrainConfig, device: torch.device) -> LoopSettings:
    return LoopSettings(
        epochs=cfg.epochs, weight_decay=cfg.weight_decay, warmup_fraction=cfg.warmup_fraction,
        grad_clip=cfg.grad_clip, label_smoothing=cfg.label_smoothing, patience=cfg.patience,
        amp=cfg.amp, device=device,
    )


def _load(cfg: TrainConfig) -> tuple[TransferModel, DataBundle]:
    """Model first (a missing download fails before any data work), then data."""
    model = load_model(cfg.model, num_classes=2, pretrained=cfg.pretrained, weights=cfg.weights,
                       pooling=cfg.pooling, max_length=cfg.max_length)
    data = load_data(cfg.data, seed=cfg.seed, val_fraction=cfg.val_fraction,
                     test_fraction=cfg.test_fraction, per_class=cfg.per_class,
                     text_column=cfg.text_column, label_column=cfg.label_column,
                     path_column=cfg.path_column)
    if data.modality != model.spec.modality:
        raise ConfigError(
            f"The model {cfg.model} takes {model.spec.modality} input but the data {cfg.data} is "
            f"{data.modality}; pick a {data.modality} model (see `transferkit models`)."
        )
    if len(data.val) == 0 or len(data.train) == 0:
        raise DataError(
            f"The data {cfg.data} leaves an empty training or validation split ({len(data.train)} "
            f"train, {len(data.val)} val); add examples or raise --val-fraction."
        )
    torch.manual_seed(cfg.seed)  # the new head's initialisation depends on the seed only
    model.reset_classifier(len(data.classes))
    model.spec.labels = list(data.classes)
    return model, data


class _Trainer:
    """One run: holds what both training paths share."""

    def __init__(self, cfg: TrainConfig, model: TransferModel, data: DataBundle, run_dir: Path,
                 progress: Progress) -> None:
        self.cfg, self.model, self.data, self.run_dir, self.progress = cfg, model, data, run_dir, progress
        self.device = resolve_device(cfg.device)
        self.generator = seed_everything(cfg.seed)
        self.metrics = rf.MetricsLog(run_dir / rf.METRICS)
        self.extra: dict[str, Any] = {}
        self.eval_batch = inference_batch_size(cfg.batch_size, self.device, model.spec.modality)
        prepare_model_layout(model, model.spec.modality)

    def encode(self, name: str) -> CachedFeatures:
        split = getattr(self.data, name)
        loader = make_indexed_loader(self.model, split, batch_size=self.eval_batch,
                                     num_workers=self.cfg.num_workers)
        start = time.perf_counter()
        cached = extract_features(self.model, loader, len(split), self.device, amp=self.cfg.amp,
                                  limit_mb=self.cfg.feature_cache_mb,
                                  progress=self.progress, desc=f"encode {name}")
        log.info("encoded %s split: %d examples in %.1f s", name, len(split), time.perf_counter() - start)
        return cached

    def run_cached(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature extraction: encode each split once, fit the head, return test (logits, labels)."""
        self.model.to(self.device).eval()
        train, val, test = (self.encode(name) for name in ("train", "val", "test"))
        num_classes = len(self.data.classes)
        if self.cfg.head_solver == "lbfgs":
            head, chosen = fit_head_lbfgs(train, val, num_classes, self.metrics)
            self.extra["lbfgs"] = chosen
        else:
            head, result = fit_head_adamw(train, val, num_classes, _settings(self.cfg, self.device),
                                          self.cfg.lr, self.cfg.batch_size, self.generator,
                                          self.metrics, self.progress)
            self.extra["best_epoch"] = result.best_epoch
        self.model.head.load_state_dict(head.state_dict())
        with torch.no_grad():
            logits = self.model.head.cpu()(test.features)
        self.model.head.to(self.device)
        return logits, test.labels

    def run_end_to_end(self, strategy: Strategy) -> tuple[torch.Tensor, torch.Tensor]:
        """Every epoch runs the network on the training data; return test (logits, labels)."""
        cfg = self.cfg
        self.model.to(self.device)
        train_loader = make_loader(self.model, self.data.train, batch_size=cfg.batch_size, train=True,
                                   augment=cfg.augment, generator=self.generator,
                                   num_workers=cfg.num_workers)
        val_loader = make_loader(self.model, self.data.val, batch_size=self.eval_batch,
                                 num_workers=cfg.num_workers)
        groups = strategy.param_groups(self.model, cfg.lr, cfg.head_lr_scale)
        result = fit(self.model, train_loader, val_loader, groups, _settings(cfg, self.device),
                     phase=strategy.name, metrics_log=self.metrics, progress=self.progress,
                     on_epoch_start=strategy.on_epoch_start)
        self.extra["best_epoch"] = result.best_epoch
        test_loader = make_loader(self.model, self.data.test, batch_size=self.eval_batch,
                                  num_workers=cfg.num_workers)
        return predict_logits(self.model, test_loader, self.device, cfg.amp)


def _write_outputs(trainer: _Trainer, logits: torch.Tensor, labels: torch.Tensor, seconds: float) -> dict[str, Any]:
    model, cfg, run_dir = trainer.model, trainer.cfg, trainer.run_dir
    rf.atomic_save_weights(run_dir / rf.WEIGHTS, model.state_dict())
    total, trainable = surgery.count_parameters(model)
    metrics = classification_metrics(labels.tolist(), logits.argmax(1).tolist(), trainer.data.classes)
    metrics.update(
        split="test", model=cfg.model, strategy=cfg.strategy, total_params=total,
        trainable_params=trainable, seconds=round(seconds, 2), peak_memory_mb=round(_peak_rss_mb(), 1),
        **trainer.extra,
    )
    if trainer.device.type == "cuda":
        metrics["peak_cuda_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    rf.atomic_write_json(run_dir / rf.TEST_METRICS, metrics)
    fig = learning_curve_figure(trainer.metrics.records, f"{cfg.model} / {cfg.strategy}")
    rf.atomic_save_figure(run_dir / rf.CURVE, fig)
    close(fig)
    return metrics


def train(config: TrainConfig, *, progress: bool | None = None) -> RunResult:
    """Adapt a pre-trained model to a labelled dataset and write a run folder.

    Args:
        config: what to train (model, data, strategy, hyperparameters); ``None`` hyperparameters
            take the strategy's defaults.
        progress: draw progress bars (default: when standard error is a terminal).

    Returns:
        The run folder and the test metrics (accuracy, macro-F1, confusion matrix, ...).

    Example:
        >>> from transferkit import TrainConfig, train
        >>> result = train(TrainConfig(model="builtin:efficientnet_lite0", data="builtin:digits"))
        >>> result.test_metrics["accuracy"] > 0.9  # doctest: +SKIP
        True
    """
    cfg = absolute_local_paths(config.resolved())
    start = time.perf_counter()
    seed_everything(cfg.seed)
    model, data = _load(cfg)
    run_dir = _prepare_run_dir(Path(cfg.out) if cfg.out else default_run_dir(cfg))
    cfg = dataclasses.replace(cfg.with_data_defaults(len(data.train)), out=str(run_dir))
    handler = logging.FileHandler(run_dir / rf.LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    log.addHandler(handler)
    old_level = log.level
    if log.getEffectiveLevel() > logging.INFO:  # library use: the run log still gets INFO
        log.setLevel(logging.INFO)
    try:
        cfg.save(run_dir / rf.CONFIG)
        rf.atomic_write_json(run_dir / rf.MODEL_SPEC, model.spec.to_dict())
        model.save_assets(run_dir / rf.ASSETS)
        for line in data.report.lines():
            log.info("%s", line)
        log.info("data: %d train / %d val / %d test examples, %d classes", len(data.train),
                 len(data.val), len(data.test), len(data.classes))
        strategy = get_strategy(cfg.strategy)
        strategy.prepare(model)
        total, trainable = surgery.count_parameters(model)
        log.info("model %s: %d parameters, %d trainable (%s)", cfg.model, total, trainable, cfg.strategy)
        trainer = _Trainer(cfg, model, data, run_dir, Progress(progress))
        if strategy.uses_feature_cache:
            if cfg.augment:
                log.warning("--augment is ignored by %s: each split is encoded once, without "
                            "augmentation; use --strategy full to train on augmented images", cfg.strategy)
            logits, labels = trainer.run_cached()
        else:
            logits, labels = trainer.run_end_to_end(strategy)
        metrics = _write_outputs(trainer, logits, labels, time.perf_counter() - start)
        log.info("test accuracy %.4f, macro-F1 %.4f (n=%d); run folder %s",
                 metrics["accuracy"], metrics["macro_f1"], metrics["n"], run_dir)
    finally:
        log.setLevel(old_level)
        log.removeHandler(handler)
        handler.close()
    return RunResult(run_dir, metrics, cfg)

