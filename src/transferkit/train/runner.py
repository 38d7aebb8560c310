"""``train(config)``: load model and data, adapt with a strategy, write the run folder."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .. import surgery
from ..config import TrainConfig
from ..data import DataBundle, DecodedCache, load_data
from ..data.datasets import check_data_source
from ..errors import ConfigError, DataError
from ..io import runfolder as rf
from ..io.atomic import atomic_save_weights, atomic_write_json, kill_point
from ..io.records import EventKind, TestMetrics, epochs_to_best, epochs_trained
from ..models import (
    ModelSpec,
    TransferModel,
    build_model_from_spec,
    check_model_spec,
    load_model,
)
from ..registry import FEATURE_BACKENDS
from ..strategies import (
    FeatureExtraction,
    FineTunePhase,
    HeadPhase,
    Strategy,
    get_strategy,
)
from .checkpoint import (
    CheckpointWriter,
    Resumable,
    RunState,
    check_unchanged,
    config_fingerprint,
    data_fingerprint,
    load_checkpoint,
    load_phase_start,
    mark_finished,
    remove_checkpoint,
    restore_cuda_rng,
    restore_host_rng,
    save_checkpoint,
    save_phase_start,
)
from .class_balance import class_weighting
from .device import (
    inference_batch_size,
    loader_workers,
    peak_rss_mb,
    prepare_model_layout,
    reset_peak_rss,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from .distributed import (
    SINGLE,
    Distributed,
    in_launched_worker,
    launch,
    report_run_dir,
    session,
    sync_batchnorm,
)
from .features import CachedFeatures, FeatureCache, extract_features
from .head import temper_head
from .head_select import AdamWHead, select_and_fit_head
from .loaders import apply_image_size, make_indexed_loader, make_loader
from .loop import (
    LoopSettings,
    check_finite_weights,
    fit,
    gather_predictions,
    predict_logits,
)
from .metrics import classification_metrics
from .metrics_log import MetricsLog
from .plots import learning_curve_figure, save_figure
from .progress import Progress
from .run_log import run_log
from .wise import float_state, interpolate_towards

log = logging.getLogger("transferkit")


@dataclass
class RunResult:
    """What ``train`` returns: the run folder, its test metrics record and the resolved config."""

    run_dir: Path
    metrics: TestMetrics | None  # None only for ``train(..., trial=True)`` (recommend's race)
    config: TrainConfig

    @property
    def test_metrics(self) -> dict[str, Any]:
        """The test metrics as written to ``test_metrics.json`` (``accuracy``, ``macro_f1``, ...)."""
        return self.metrics.to_dict() if self.metrics is not None else {}


def absolute_local_paths(cfg: TrainConfig) -> TrainConfig:
    """Local data and weights paths made absolute, so the saved config works from any folder."""
    updates = {}
    for name in ("data", "weights"):
        value = getattr(cfg, name)
        if value and not value.startswith("builtin:") and Path(value).expanduser().exists():
            updates[name] = str(Path(value).expanduser().resolve())
    return dataclasses.replace(cfg, **updates)


def _load_data(cfg: TrainConfig, modality: str) -> DataBundle:
    data = load_data(cfg.data_options)
    if data.modality != modality:
        raise ConfigError(
            f"The model {cfg.model} takes {modality} input but the data {cfg.data} is "
            f"{data.modality}; pick a {data.modality} model (see `transferkit models`)."
        )
    if len(data.val) == 0 or len(data.train) == 0:
        raise DataError(
            f"The data {cfg.data} leaves an empty training or validation split ({len(data.train)} "
            f"train, {len(data.val)} val); add examples or raise --val-fraction."
        )
    return data


class _Trainer:
    """One run: the phases of a strategy over shared data, device, metrics and checkpoints."""

    def __init__(self, cfg: TrainConfig, model: TransferModel, data: DataBundle, run_dir: Path,
                 progress: Progress, started: float, ctx: Distributed = SINGLE, trial: bool = False) -> None:
        self.cfg, self.model, self.data, self.run_dir, self.progress = cfg, model, data, run_dir, progress
        self.started, self.ctx, self.trial = started, ctx, trial
        # what a resume checks it continues on: the data listing and splits, and the config
        self.fingerprints = (data_fingerprint(data), config_fingerprint(run_dir / rf.CONFIG))
        self.device = ctx.device(resolve_device(cfg.device))
        self.precision = resolve_precision(cfg.precision, self.device, model)
        self.workers = loader_workers(cfg.num_workers, self.device, ctx.world)
        self.extra: dict[str, Any] = {"precision": self.precision}  # TestMetrics fields the phases fill
        log.info("precision %s (--precision %s on %s)", self.precision, cfg.precision, self.device)
        self.generator = seed_everything(cfg.seed)
        self.metrics = MetricsLog(run_dir / rf.METRICS if ctx.main else None,  # rank 0 alone writes
                                  run_dir / rf.TENSORBOARD if cfg.tensorboard and ctx.main else None)
        self.class_weight, imbalanced = class_weighting(cfg.class_weights, data.train.class_counts(data.num_classes),
                                                         data.classes)
        self.warnings: list[str] = [*data.report.warnings, *([imbalanced] if imbalanced else [])]
        if imbalanced:
            log.warning("%s", imbalanced)
        self.eval_batch = inference_batch_size(cfg.batch_size, self.device, model.spec.modality)
        self.deadline = started + cfg.time_budget if cfg.time_budget else None
        self._encoder: Any = None  # the feature backend's encoder (None: torch runs the model)
        self._encoder_ready = False
        self.probe_score: tuple[float, float] | None = None  # (accuracy, loss) the head was chosen by
        self.probe_refit = self.cfg.refit  # whether the head saw validation (refitted on train + val)
        # one budget for every split's features; a spill file goes to the run folder's disk
        self.feature_cache = FeatureCache(
            cfg.feature_cache_mb, Path(cfg.cache_dir).expanduser() if cfg.cache_dir else run_dir)
        # images decoded and resized once for every epoch and phase; spills to the same disk
        self.decoded = DecodedCache(cfg.decoded_cache_mb, self.feature_cache.spill_dir)
        prepare_model_layout(model, model.spec.modality)

    def run_state(self) -> RunState:
        """The run's part of a checkpoint: fingerprints, time spent, warnings, record entries."""
        return RunState(*self.fingerprints, elapsed=time.perf_counter() - self.started,
                        warnings=list(self.warnings), extra=dict(self.extra))

    def settings(self, own: dict[str, Any] | None = None) -> LoopSettings:
        """The loop's settings; ``own`` overrides epochs, patience and weight decay (LP-FT's
        probe phase trains with the head defaults, not phase 2's)."""
        cfg, own = self.cfg, own or {}
        return LoopSettings(
            epochs=own.get("epochs", cfg.epochs), weight_decay=own.get("weight_decay", cfg.weight_decay),
            warmup_fraction=cfg.warmup_fraction, grad_clip=cfg.grad_clip,
            label_smoothing=cfg.label_smoothing, patience=own.get("patience", cfg.patience),
            precision=self.precision, device=self.device, overfit_gap=cfg.overfit_gap, deadline=self.deadline,
            dist=self.ctx, seed=cfg.seed, compile=cfg.compile, compile_mode=cfg.compile_mode,
            class_weight=self.class_weight,
        )

    def encode(self, name: str) -> CachedFeatures | None:
        """A split's features; in a distributed run each rank encodes its shard and rank 0
        gathers the matrix (the other ranks get ``None``)."""
        split, ctx = getattr(self.data, name), self.ctx
        loader = make_indexed_loader(self.model, split, batch_size=self.eval_batch,
                                     num_workers=self.workers, ctx=ctx)
        start = time.perf_counter()
        if not self._encoder_ready:  # built once per run (ONNX Runtime: one export of the backbone)
            # every split the head phases encode with it (the test split only when scored)
            examples = len(self.data.train) + len(self.data.val) + (0 if self.trial else len(self.data.test))
            self._encoder = FEATURE_BACKENDS.get(self.cfg.backend)(self.model, loader, self.device, examples=examples)
            self._encoder_ready = True
        # a shard is gathered at once: its own cache, so rank 0's budget holds the whole matrices
        cache = FeatureCache(self.cfg.feature_cache_mb, self.feature_cache.spill_dir) if ctx.enabled else self.feature_cache
        cached = extract_features(self.model, loader, len(loader.dataset), self.device, precision=self.precision, compile=self.cfg.compile,
                                  cache=cache, progress=self.progress, desc=f"encode {name}", encode=self._encoder)
        if ctx.enabled:
            cached = self._gathered(cached, len(split))
        log.info("encoded %s split: %d examples in %.1f s", name, len(split), time.perf_counter() - start)
        return cached

    def _gathered(self, shard: CachedFeatures, n: int) -> CachedFeatures | None:
        """Every rank's shard of features [n_r, F] joined on rank 0 into the run's cache."""
        features, labels = self.ctx.gather_rows(shard.features, n), self.ctx.gather_rows(shard.labels, n)
        if features is None or labels is None:
            return None
        buffer, spill = self.feature_cache.allocate(n, features.shape[1])
        buffer.copy_(features)
        return CachedFeatures(buffer, labels, spill is not None, spill)

    def run(self, strategy: Strategy, resume: Resumable | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Run the strategy's phases; return the test split's (logits [N, C], labels [N]) (``None``
        for a trial)."""
        phases = strategy.phases
        if resume is not None:  # checkpoints are written in fine-tune phases: the head phases had finished
            phases = tuple(p for p in phases if not isinstance(p, HeadPhase))
        result: tuple[torch.Tensor, torch.Tensor] | None = None
        for i, phase in enumerate(phases):
            if isinstance(phase, HeadPhase):
                last = i == len(phases) - 1
                # A race trial of LP-FT is scored on phase 2's validation accuracy: a probe refitted
                # on train + val would be scored on examples it was fitted to.
                self.probe_refit = self.cfg.refit and (last or not self.trial)
                result = self.run_head(phase, encode_test=last and not self.trial)
            else:
                result = self.run_finetune(strategy, phase, resume)
        if result is None and not self.trial:
            raise ConfigError(f"strategy {strategy.name}: its last phase must produce the model to test.")
        return result

    def run_head(self, phase: HeadPhase, encode_test: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Encode splits once with the frozen backbone and fit the head on the cached features."""
        FeatureExtraction().prepare(self.model)  # only the head; the backbone in eval mode
        self.model.to(self.device).eval()
        train, val = self.encode("train"), self.encode("val")
        if train is not None and val is not None:  # rank 0 fits; the other ranks take its head
            self._fit_head(phase, train, val)
        head, self.extra, self.probe_score, self.warnings, rng = self.ctx.broadcast_object(
            (self.model.head.state_dict(), self.extra, self.probe_score, self.warnings, self.generator.get_state()))
        self.model.head.load_state_dict(head)
        self.generator.set_state(rng)  # the head's epochs drew from it on rank 0
        if not encode_test:
            return None
        test = self.encode("test")
        if test is None:  # not rank 0: the test split is scored there
            return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
        with torch.no_grad():
            logits = self.model.head.cpu()(test.features)
        self.model.head.to(self.device)
        return logits, test.labels

    def _fit_head(self, phase: HeadPhase, train: CachedFeatures, val: CachedFeatures) -> None:
        """Choose and fit the head on cached features; load it into the model."""
        own = dict(phase.settings)
        # rank 0 alone fits the head: its epochs on cached features take no collectives
        single = dataclasses.replace(self.settings(own), dist=SINGLE)
        adamw = AdamWHead(single, own.get("lr", self.cfg.lr), self.cfg.batch_size, self.generator)
        choice, warnings = select_and_fit_head(
            train, val, len(self.data.classes), self.cfg.head_solver, adamw=adamw, refit=self.probe_refit,
            seed=self.cfg.seed, metrics_log=self.metrics, progress=self.progress, phase=phase.record,
            class_weight=self.class_weight)
        head = choice.head
        self.extra["head"] = choice.record()
        self.probe_score = (choice.score, choice.loss)
        if choice.solver == "lbfgs":
            self.extra["lbfgs"] = {"l2": choice.chosen["l2"], "val_accuracy": choice.score, "val_loss": choice.loss}
        else:
            self.extra["best_epoch"] = int(choice.chosen["epochs"])
        self.warnings += warnings
        if phase.temper and self.cfg.probe_energy > 0:
            scale = temper_head(head, train, self.cfg.probe_energy)
            self.extra["probe_scale"] = round(scale, 6)
            log.info("%s: probe logits scaled by %.4f (temperature %.2f) for a training loss of "
                     "%.2f x ln(C)", self.cfg.strategy, scale, 1 / scale, self.cfg.probe_energy)
        self.model.head.load_state_dict(head.state_dict())

    def phase_start(self, phase: FineTunePhase, resume: Resumable | None) -> dict[str, torch.Tensor] | None:
        """LP-FT: the probe's weights, which phase 2's kept weights move back towards (WiSE-FT);
        kept beside the checkpoint for a resume. None where nothing is interpolated (alpha 1; a
        race trial, scored on validation as fine-tuned)."""
        if not phase.ensemble_with_start or self.cfg.wise_alpha == 1.0 or self.trial:
            return None
        if resume is not None:
            return load_phase_start(self.run_dir)
        start = float_state(self.model)
        if self.ctx.main:
            save_phase_start(self.run_dir, start)
        return start

    def run_finetune(self, strategy: Strategy, phase: FineTunePhase,
                     resume: Resumable | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Train end to end with the strategy's schedule; checkpoint every epoch.

        A resumed phase continues after the checkpoint's epoch, or, when it had already decided
        to stop (early stop, time budget, last epoch), trains no further: the loop only restores
        its optimizer groups and best weights, and the test pass follows.
        """
        cfg, settings = self.cfg, self.settings()
        if resume is not None:
            restore_cuda_rng(resume)
            restore_host_rng(resume.host_rng)
            if resume.stop_decided():
                settings = dataclasses.replace(settings, epochs=resume.loop.state.epoch)
        self.model.to(self.device)
        sync_batchnorm(self.model, self.ctx, self.device)  # CUDA, several processes: batch statistics span the ranks
        strategy.prepare(self.model)
        train_loader = make_loader(self.model, self.data.train, batch_size=cfg.batch_size, train=True,
                                   augment=cfg.augment, generator=self.generator,
                                   num_workers=self.workers, ctx=self.ctx,
                                   pin_memory=self.device.type == "cuda", decoded=self.decoded)
        val_loader = make_loader(self.model, self.data.val, batch_size=self.eval_batch, num_workers=self.workers,
                                 ctx=self.ctx, pin_memory=self.device.type == "cuda", decoded=self.decoded)
        start = self.phase_start(phase, resume)
        result = fit(self.model, train_loader, val_loader, strategy.param_groups(self.model),
                     settings, phase=phase.record, label=f"{strategy.name} {phase.record}",
                     metrics_log=self.metrics, progress=self.progress,
                     on_epoch_start=strategy.on_epoch_start, generator=self.generator,
                     # a trial is run again, never resumed: no checkpoint (MiniLM: 1.5 s an epoch here)
                     checkpoint=CheckpointWriter(lambda ck: save_checkpoint(self.run_dir, ck, self.run_state()),
                                                 cfg.checkpoint_every) if self.ctx.main and not self.trial else None,
                     resume=resume.loop if resume is not None else None,
                     baseline=phase.keep_start_if_better,
                     # a probe refitted on train + val has seen val: its honest score is the selection's
                     baseline_score=self.probe_score if self.probe_refit else None,
                     keep_latest=phase.keep_latest)
        self.extra["best_epoch"] = result.best_epoch
        if resume is None or not resume.run.finished:  # a finished phase's warnings were saved whole
            self.warnings += _replayed_warnings(resume) + result.warnings
        kill_point("fit-done")
        if self.ctx.main:
            mark_finished(self.run_dir, self.run_state())
        if self.trial:
            return None
        if start is not None:  # after the loop: its checkpoints hold the weights it kept, as it kept them
            interpolate_towards(self.model, start, cfg.wise_alpha)
            self.extra["wise_alpha"] = cfg.wise_alpha
        kill_point("test-pass")
        # read once: decoding into the cache would only hold memory
        test_loader = make_loader(self.model, self.data.test, batch_size=self.eval_batch,
                                  num_workers=self.workers, ctx=self.ctx, pin_memory=self.device.type == "cuda")
        return gather_predictions(self.ctx, *predict_logits(self.model, test_loader, self.device, self.precision))


def _replayed_warnings(resume: Resumable | None) -> list[str]:
    """The loop's warnings from the epochs before a resume (its records keep them as events)."""
    if resume is None:
        return []
    return [e.message for r in resume.loop.records if r.phase is resume.loop.phase
            for e in r.events if e.kind is EventKind.OVERFITTING]


def _write_model(trainer: _Trainer, strategy: Strategy) -> None:
    model, cfg, run_dir = trainer.model, trainer.cfg, trainer.run_dir
    check_finite_weights(model, f"{cfg.strategy} training")  # never a finished run with NaN weights
    strategy.write_extras(model, run_dir)
    atomic_save_weights(run_dir / rf.WEIGHTS, strategy.final_state_dict(model))


def _write_outputs(trainer: _Trainer, strategy: Strategy, scored: tuple[torch.Tensor, torch.Tensor] | None,
                   seconds: float) -> TestMetrics | None:
    """Rank 0 finishes the folder: the weights, ``test_metrics.json`` when the test split was
    scored (``scored``: its logits (N, C) and labels (N,)), the curve, then no checkpoint."""
    model, cfg, run_dir = trainer.model, trainer.cfg, trainer.run_dir
    total, trainable = surgery.count_parameters(model)  # as trained (LoRA: the factors and the head)
    _write_model(trainer, strategy)
    kill_point("outputs")
    records = trainer.metrics.records
    metrics = None
    if scored is not None:
        logits, labels = scored
        metrics = TestMetrics(
            **classification_metrics(labels.tolist(), logits.argmax(1).tolist(), trainer.data.classes),
            split="test", model=cfg.model, strategy=cfg.strategy, total_params=total,
            trainable_params=trainable, seconds=round(seconds, 2), peak_memory_mb=round(peak_rss_mb(), 1),
            peak_cuda_memory_mb=(round(torch.cuda.max_memory_allocated() / 2**20, 1)
                                 if trainer.device.type == "cuda" else None),
            epochs=epochs_trained(records), epochs_to_best=epochs_to_best(records),
            warnings=trainer.warnings, skipped=trainer.data.report.skipped_inputs(), **trainer.extra,
        )
        atomic_write_json(run_dir / rf.TEST_METRICS, metrics.to_dict())
    if not trainer.trial:  # a race trial: matplotlib's 0.5 s would be a tenth of a few-shot run
        save_figure(learning_curve_figure(records, f"{cfg.model} / {cfg.strategy}"), run_dir / rf.CURVE)
    remove_checkpoint(run_dir)
    return metrics


def _execute(cfg: TrainConfig, model: TransferModel, data: DataBundle, run_dir: Path,
             progress: bool | None, started: float, resume: Resumable | None = None,
             ctx: Distributed = SINGLE, trial: bool = False) -> RunResult:
    strategy = get_strategy(cfg.strategy, cfg)
    trainer = _Trainer(cfg, model, data, run_dir, Progress(progress if ctx.main else False), started, ctx,
                       trial)
    if cfg.augment and not strategy.trains_backbone():
        trainer.warnings.append(f"--augment is ignored by {cfg.strategy}: each split is encoded once, without "
                                "augmentation; use an end-to-end strategy to train on augmented images")
        log.warning("%s", trainer.warnings[-1])
    if resume is not None:  # the warnings and entries of the phases before, as they were
        trainer.metrics.records = list(resume.loop.records)
        trainer.warnings, trainer.extra = list(resume.run.warnings), dict(resume.run.extra)
    try:
        result = trainer.run(strategy, resume)
    finally:
        trainer.metrics.close()
    metrics = None
    if ctx.main:  # rank 0 holds the whole test split's logits and writes the run folder
        metrics = _write_outputs(trainer, strategy, result, time.perf_counter() - started)
    if metrics is not None:
        log.info("test accuracy %.4f, macro-F1 %.4f (n=%d); run folder %s",
                 metrics.accuracy, metrics.macro_f1, metrics.n, run_dir)
    if trial:  # the race: the weights, no test_metrics.json (every rank alike)
        return RunResult(run_dir, None, cfg)
    return RunResult(run_dir, ctx.broadcast_object(metrics), cfg)


def check_config(config: TrainConfig) -> TrainConfig:
    """The checks ``train`` makes before it loads a model or creates a folder, alone: the
    strategy and its settings, the device being present, the data source existing and the model
    spec naming a model. ``transferkit train --check`` (and so the dashboard's form) runs this
    very function, so a bad input gives the same error whether it is checked or trained.

    Args:
        config: what to train (field types and ranges were checked when it was built).

    Returns:
        The config with the strategy's defaults filled in and local paths made absolute.

    Raises:
        ConfigError, DataError, UnknownModelError: one paragraph naming the problem and the fix.

    Example:
        >>> check_config(TrainConfig(model="torchvision:resnet18", data="builtin:digits")).strategy
        'feature-extraction'
    """
    cfg = absolute_local_paths(config.resolved())
    resolve_device(cfg.device)  # a device that is not there fails before any model, data or folder
    check_data_source(cfg.data)  # a typo in --data fails before a model is loaded or downloaded
    check_model_spec(cfg.model)  # an unknown name too (nothing is built or downloaded)
    return cfg


def _launching(nproc: int | None, cfg: TrainConfig) -> bool:
    """Whether this call starts ``nproc`` worker processes (not inside a launched worker, where
    torchrun or an outer ``--nproc`` already did)."""
    if nproc is None or nproc == 1 or in_launched_worker():
        return False
    if nproc < 1:
        raise ConfigError(f"nproc: {nproc} processes; give 1 or more (--nproc 2 trains in two processes).")
    device = resolve_device(cfg.device)
    if device.type == "cuda" and nproc > torch.cuda.device_count():
        raise ConfigError(f"nproc: {nproc} processes on CUDA take one GPU each, but this machine has "
                          f"{torch.cuda.device_count()}; use --nproc {torch.cuda.device_count()} or fewer, "
                          "or --device cpu.")
    if device.type == "mps":
        raise ConfigError("nproc: several processes cannot share the Apple GPU (MPS); use --nproc 1.")
    return True


def _train_worker(config: TrainConfig, progress: bool | None, trial: bool = False) -> RunResult:
    """What each launched worker runs (module level: the spawned process imports it)."""
    return train(config, progress=progress, trial=trial)


def _resume_worker(run_dir: str, progress: bool | None) -> RunResult:
    return resume(run_dir, progress=progress)


def _launched(worker: Callable[..., RunResult], args: tuple[Any, ...], nproc: int) -> RunResult:
    """``launch`` a run's workers; its ``seconds`` then count the launch too (spawning, imports,
    the rendezvous: ~6 s on a 2-core CPU), which rank 0's clock, started inside its worker, misses;
    ``launch_seconds`` says how much of ``seconds`` it was."""
    began = time.perf_counter()
    result = launch(worker, args, nproc)
    wall = time.perf_counter() - began
    metrics = result.metrics
    if metrics is not None and metrics.seconds is not None:
        metrics.launch_seconds = round(max(wall - metrics.seconds, 0.0), 2)
        metrics.seconds = round(wall, 2)
        atomic_write_json(result.run_dir / rf.TEST_METRICS, metrics.to_dict())
    return result


def train(config: TrainConfig, *, progress: bool | None = None, nproc: int | None = None,
          trial: bool = False) -> RunResult:
    """Adapt a pre-trained model to a labelled dataset and write a run folder.

    Args:
        config: what to train (model, data, strategy, hyperparameters); ``None`` hyperparameters
            take the strategy's defaults.
        progress: draw progress bars (default: when standard error is a terminal).
        nproc: train data-parallel in this many local processes (torch's elastic launcher; Gloo
            on the CPU, NCCL with one GPU each on CUDA). Inside ``torchrun`` workers the run is
            distributed over the launched processes whatever this says.
        trial: a throwaway run (``recommend``'s race, which judges on validation alone): it
            writes the weights and ``metrics.jsonl`` but never touches the test split
            (``metrics`` is ``None``), writes no per-epoch checkpoint (a trial is run again,
            not resumed) and no learning-curve figure.

    Returns:
        The run folder and the test metrics (accuracy, macro-F1, confusion matrix, ...).

    Example:
        >>> from transferkit import TrainConfig, train
        >>> result = train(TrainConfig(model="builtin:efficientnet_lite0", data="builtin:digits"))
        >>> result.test_metrics["accuracy"] > 0.9  # doctest: +SKIP
        True
    """
    cfg = check_config(config)
    if _launching(nproc, cfg):
        return _launched(_train_worker, (config, progress, trial), int(nproc or 1))
    with session(resolve_device(cfg.device)) as ctx:
        return _train(cfg, config, progress, ctx, trial)


def _train(cfg: TrainConfig, config: TrainConfig, progress: bool | None, ctx: Distributed,
           trial: bool = False) -> RunResult:
    started = time.perf_counter()
    reset_peak_rss()
    seed_everything(cfg.seed)
    model = load_model(cfg.model, num_classes=2, pretrained=cfg.pretrained, weights=cfg.weights,
                       pooling=cfg.pooling, max_length=cfg.max_length)
    cfg = absolute_local_paths(config.resolved(model.spec.modality))
    data = _load_data(cfg, model.spec.modality)
    if (size := apply_image_size(model, cfg.image_size, data.train)) is not None:
        cfg = dataclasses.replace(cfg, image_size=size)  # the config keeps the pixels chosen
    torch.manual_seed(cfg.seed)  # the new head's initialisation depends on the seed only
    model.reset_classifier(len(data.classes))
    model.spec.labels = list(data.classes)
    get_strategy(cfg.strategy, cfg).prepare(model)  # fails early on a bad --group-lrs
    run_dir = None
    if ctx.main:  # rank 0 creates the folder; the other ranks learn its name
        run_dir = (rf.new_empty_folder(Path(cfg.out)) if cfg.out  # a default name: a folder of its own
                   else rf.new_empty_folder(rf.default_folder(cfg.model, strategy=cfg.strategy), unique=True))
        report_run_dir(ctx, run_dir)
    run_dir = ctx.broadcast_object(run_dir)
    cfg = dataclasses.replace(cfg.with_data_defaults(len(data.train)), out=str(run_dir))
    with run_log(run_dir, ctx):
        if ctx.main:
            cfg.save(run_dir / rf.CONFIG)
            atomic_write_json(run_dir / rf.MODEL_SPEC, model.spec.to_dict())
            model.save_assets(run_dir / rf.ASSETS)
        ctx.barrier()  # the other ranks read config.yaml (its fingerprint) next
        if ctx.enabled:
            log.info("distributed: %d processes (%s), %d threads each", ctx.world,
                     "NCCL" if resolve_device(cfg.device).type == "cuda" else "Gloo", torch.get_num_threads())
        for line in data.report.lines():  # its last line: modality, classes and split sizes
            log.info("%s", line)
        total, trainable = surgery.count_parameters(model)
        log.info("model %s: %d parameters, %d trainable at the start (%s)", cfg.model, total,
                 trainable, cfg.strategy)
        return _execute(cfg, model, data, run_dir, progress, started, ctx=ctx, trial=trial)


def resume(run_dir: str | Path, *, progress: bool | None = None, nproc: int | None = None) -> RunResult:
    """Continue an interrupted run from its last finished epoch, with the same frozen groups,
    optimizer groups and state, random states and metrics so far.

    Example:
        >>> resume("runs/resnet18-gradual-20261127-120000")  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    ck = load_checkpoint(run_dir)
    cfg = TrainConfig.load(run_dir / rf.CONFIG)
    if _launching(nproc, cfg):
        return _launched(_resume_worker, (str(run_dir), progress), int(nproc or 1))
    with session(resolve_device(cfg.device)) as ctx:
        return _resume(run_dir, ck, cfg, progress, ctx)


def _resume(run_dir: Path, ck: Resumable, cfg: TrainConfig, progress: bool | None, ctx: Distributed) -> RunResult:
    # a killed process's half-written files; rank 0 removes them, the others wait for it
    leftovers = ctx.broadcast_object(rf.remove_temporaries(run_dir) if ctx.main else None)
    report_run_dir(ctx, run_dir)
    spec = ModelSpec.from_dict(json.loads((run_dir / rf.MODEL_SPEC).read_text(encoding="utf-8")))
    model = build_model_from_spec(spec, run_dir / rf.ASSETS)
    get_strategy(cfg.strategy, cfg).setup_model(model)  # e.g. LoRA layers, before their weights load
    model.load_state_dict(ck.loop.model)
    data = _load_data(cfg, spec.modality)
    check_unchanged(ck, data, run_dir)
    with run_log(run_dir, ctx):
        log.info("resuming %s after epoch %d of phase %s%s", run_dir, ck.loop.state.epoch, ck.loop.phase,
                 " (its training had ended; testing)" if ck.stop_decided() else "")
        for leftover in leftovers:
            log.info("removed %s, left by the interrupted process", leftover)
        # the time budget counts the time spent before the interruption
        return _execute(cfg, model, data, run_dir, progress, time.perf_counter() - ck.run.elapsed, resume=ck, ctx=ctx)
