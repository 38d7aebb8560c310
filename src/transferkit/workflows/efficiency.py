"""Sample efficiency: test accuracy against training-set size, with and without pre-training.

For each size (examples per class) and seed, on nested seeded subsets of one training split and
the same validation sample and test split:

- ``feature-extraction``: a logistic-regression head (L-BFGS, L2 chosen on validation) on
  frozen pre-trained features. Every example any point needs is encoded **once**, at the model's
  own preprocessing; each point slices the cached matrix.
- ``fine-tune``: every layer from the pre-trained weights (AdamW lr 1e-4, head 10x, BatchNorm
  statistics frozen) - the ``full`` strategy.
- ``scratch``: the same architecture from random weights with a recipe for training from
  scratch (BatchNorm in train mode, lr 2e-3, warmup 10%, light augmentation, label smoothing
  0.1, more epochs).

End-to-end points (fine-tune, scratch) of image models train at ``image_size``: ``auto`` is
twice the data's median image side rounded up to a multiple of 32, capped at the model's own
size (28-pixel MNIST digits: 64). Upsampling small images to 224 pixels multiplies the compute
by 12 and adds no information; it is what makes the 2-core CPU budget possible.

A ``time_budget`` covers the whole command. Each end-to-end point gets a share of what is left,
weighted by sqrt(training-set size) (scratch 1.5x); its epoch count is what fits that share at
the measured speed (capped per recipe), so the cosine schedule completes rather than being cut.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..config import DataOptions, TrainConfig
from ..data import DataBundle, as_data_options, load_data, resolve_image_size
from ..data.splits import sample_per_class
from ..errors import ConfigError, DataError
from ..io.atomic import atomic_write_json
from ..io.records import Phase
from ..models import TransferModel, load_model
from ..strategies import get_strategy
from ..train.device import (
    inference_batch_size,
    move_to,
    prepare_model_layout,
    resolve_device,
    seed_everything,
)
from ..train.distributed import SINGLE, Distributed, in_launched_worker, launch, session
from ..train.features import CachedFeatures, extract_features
from ..train.head import fit_head_lbfgs
from ..train.loaders import make_indexed_loader, make_loader
from ..train.loop import LoopSettings, fit, gather_predictions, predict_logits
from ..train.progress import Progress
from ._common import parse_int_list, prepare_out
from .efficiency_report import EFFICIENCY_JSON, EFFICIENCY_SUMMARY, write_outputs
from .multiplier import data_multipliers, headline

__all__ = ["EfficiencyResult", "Recipe", "RECIPES", "METHODS", "sample_efficiency",
           "EFFICIENCY_JSON", "EFFICIENCY_SUMMARY", "DEFAULT_TIME_BUDGET"]

log = logging.getLogger("transferkit")

METHODS = ("feature-extraction", "fine-tune", "scratch")
DEFAULT_TIME_BUDGET = 1500.0  # 25 minutes: the whole command fits in 30 on a 2-core CPU
VAL_PER_CLASS = 50  # validation sample for the feature-extraction head's L2 strength
E2E_VAL_PER_CLASS = 20  # its nested part for early stopping: scored every epoch, so kept small


@dataclass(frozen=True)
class Recipe:
    """How an end-to-end point trains (``lr`` by modality: image, text)."""

    pretrained: bool
    lr: dict[str, float]
    head_lr_scale: float
    weight_decay: float
    bn: str
    augment: bool
    label_smoothing: float
    warmup_fraction: float
    max_epochs: int
    patience: int
    weight: float  # share of the time budget relative to fine-tuning


RECIPES: dict[str, Recipe] = {
    "fine-tune": Recipe(True, {"image": 1e-4, "text": 3e-5}, 10.0, 0.05, "freeze-stats", False, 0.0,
                        0.05, max_epochs=15, patience=4, weight=1.0),
    "scratch": Recipe(False, {"image": 2e-3, "text": 5e-4}, 1.0, 0.05, "train", True, 0.1, 0.1,
                      max_epochs=60, patience=10, weight=1.5),
}


@dataclass
class EfficiencyResult:
    """What :func:`sample_efficiency` returns.

    Attributes:
        out_dir: the folder holding efficiency.json (the points), efficiency_summary.json,
            efficiency.md and efficiency.png.
        points: one dict per trained point (``per_class``, ``seed``, ``method``, ``accuracy``, ...).
        multipliers: the data multiplier of every transfer point (see ``multiplier.data_multipliers``).
        summary: settings, mean curves, multipliers and the headline lines.
    """

    out_dir: Path
    points: list[dict[str, Any]]
    multipliers: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)


class _Clock:
    """The time budget and the measured speed of each method (seconds per training example and
    per evaluated example), from a calibration and then from every point that ran."""

    OVERHEAD = 1.0  # seconds per point outside the epochs and the test pass (model copy, loaders)

    def __init__(self, budget: float | None) -> None:
        self.start, self.budget = time.perf_counter(), budget
        self.train_s: dict[str, float] = {}
        self.eval_s: dict[str, float] = {}

    def left(self) -> float:
        return math.inf if self.budget is None else self.budget - (time.perf_counter() - self.start)

    @staticmethod
    def _update(table: dict[str, float], method: str, seconds: float, items: float) -> None:
        if items > 0 and seconds > 0:
            old = table.get(method)
            table[method] = seconds / items if old is None else 0.5 * (old + seconds / items)

    def observe(self, method: str, train: tuple[float, float] | None = None, evaluate: tuple[float, float] | None = None) -> None:
        """Fold in ``(seconds, items)`` of training and of evaluation."""
        if evaluate is not None:
            self._update(self.eval_s, method, *evaluate)
        if train is not None:
            self._update(self.train_s, method, *train)

    def fixed(self, method: str, n_test: int) -> float:
        """A point's cost outside its epochs: the test pass and the overhead."""
        return self.OVERHEAD + n_test * self.eval_s.get(method, 0.0)

    def epoch(self, method: str, n_train: int, n_val: int) -> float:
        return n_train * self.train_s.get(method, 0.0) + n_val * self.eval_s.get(method, 0.0)


class _Study:
    """One sample-efficiency study: data, templates, feature cache and the points so far."""

    def __init__(self, model: str, bundle: DataBundle, sizes: list[int], seeds: list[int],
                 methods: list[str], image_size: int | str | None, clock: _Clock, device: str,
                 progress: Progress, ctx: Distributed = SINGLE) -> None:
        self.model_spec, self.bundle, self.sizes, self.seeds, self.methods = model, bundle, sizes, seeds, methods
        self.clock, self.progress, self.ctx = clock, progress, ctx
        self.device = ctx.device(resolve_device(device))
        self.num_classes = bundle.num_classes
        seed_everything(0)
        self.pretrained = load_model(model, self.num_classes, pretrained=True) if (
            "feature-extraction" in methods or "fine-tune" in methods) else None
        self.modality = bundle.modality
        self.val = bundle.val.subset(sample_per_class(bundle.val.labels, VAL_PER_CLASS, seed=0))
        self.e2e_val = bundle.val.subset(sample_per_class(bundle.val.labels, E2E_VAL_PER_CLASS, seed=0))
        self.subsets = {s: {n: sample_per_class(bundle.train.labels, n, seed=s) for n in sizes} for s in seeds}
        self.image_size = self._image_size(image_size)
        self.eval_batch = inference_batch_size(32, self.device, self.modality)
        self.points: list[dict[str, Any]] = []
        self.cache: dict[str, Any] = {}

    def _image_size(self, image_size: int | str | None) -> int | None:
        """End-to-end points' input size (``auto`` unless the data options say otherwise)."""
        if self.modality != "image":
            return None
        probe = self.pretrained or load_model(self.model_spec, self.num_classes, pretrained=False)
        return resolve_image_size(image_size, self.bundle.train, probe.spec.image.crop_size, default="auto")

    # -- feature extraction: encode once, slice per point ------------------------------------
    def encode(self) -> None:
        """Encode every training example a point needs, the validation sample and the test split."""
        start = time.perf_counter()
        net = prepare_model_layout(copy.deepcopy(self.pretrained), self.modality).to(self.device).eval()
        needed = sorted({i for s in self.seeds for i in self.subsets[s][self.sizes[-1]]})
        self.cache["row"] = {i: r for r, i in enumerate(needed)}
        for name, split in (("train", self.bundle.train.subset(needed)), ("val", self.val), ("test", self.bundle.test)):
            loader = make_indexed_loader(net, split, batch_size=self.eval_batch)
            self.cache[name] = extract_features(net, loader, len(split), self.device, progress=self.progress,
                                                desc=f"encode {name}")
        self.cache["seconds"] = round(time.perf_counter() - start, 2)
        log.info("efficiency: encoded %d train, %d val, %d test examples once in %.1f s", len(needed),
                 len(self.val), len(self.bundle.test), self.cache["seconds"])

    def feature_point(self, seed: int, size: int) -> dict[str, Any]:
        start = time.perf_counter()
        rows = torch.tensor([self.cache["row"][i] for i in self.subsets[seed][size]])
        train = CachedFeatures(self.cache["train"].features[rows], self.cache["train"].labels[rows])
        head, chosen = fit_head_lbfgs(train, self.cache["val"], self.num_classes)
        test = self.cache["test"]
        with torch.no_grad():
            acc = (head(test.features).argmax(1) == test.labels).float().mean().item()
        return {"accuracy": acc, "val_accuracy": chosen["val_accuracy"], "l2": chosen["l2"],
                "seconds": time.perf_counter() - start}

    # -- end-to-end points -------------------------------------------------------------------
    def template(self, method: str, seed: int) -> TransferModel:
        if RECIPES[method].pretrained:
            return self.pretrained
        key = f"random-{seed}"
        if key not in self.cache:  # the same random init for every size of a seed
            seed_everything(seed)
            self.cache[key] = load_model(self.model_spec, self.num_classes, pretrained=False)
        return self.cache[key]

    def _model(self, method: str, seed: int) -> TransferModel:
        model = copy.deepcopy(self.template(method, seed))
        torch.manual_seed(seed)
        model.reset_classifier(self.num_classes)
        if self.image_size is not None:
            model.spec.image = model.spec.image.at_size(self.image_size)
        return prepare_model_layout(model, self.modality).to(self.device)

    def _epochs(self, method: str, budget: float, n_train: int) -> int:
        """Epochs that fit ``budget`` at the measured speed; rank 0's clock decides for all ranks."""
        cap = RECIPES[method].max_epochs
        if not math.isfinite(budget) or method not in self.clock.train_s:  # no budget: the epoch cap
            return cap
        spend = budget - self.clock.fixed(method, len(self.bundle.test))
        return self.ctx.broadcast_object(
            int(max(1, min(cap, spend // self.clock.epoch(method, n_train, len(self.e2e_val))))))

    def calibrate(self, method: str) -> None:
        """Time two training steps and an evaluation pass (after one untimed warm-up step)."""
        model = self._model(method, self.seeds[0])
        strategy = self._strategy(method, 1)
        strategy.prepare(model)
        subset = self.bundle.train.subset(self.subsets[self.seeds[0]][self.sizes[-1]][:24])
        batches = list(make_loader(model, subset, batch_size=8, train=True, augment=RECIPES[method].augment))
        optimizer = torch.optim.AdamW(strategy.param_groups(model), lr=1e-5)
        model.train()
        strategy.on_epoch_start(model, 1)
        start = 0.0
        for i, (inputs, labels) in enumerate(batches):
            if i == 1:  # the first step allocates and warms up; it is not timed
                start = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(move_to(inputs, self.device)), move_to(labels, self.device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        self.clock.observe(method, train=(time.perf_counter() - start, 8 * (len(batches) - 1)))
        loader = make_loader(model, subset, batch_size=self.eval_batch)
        start = time.perf_counter()
        predict_logits(model, loader, self.device)
        self.clock.observe(method, evaluate=(time.perf_counter() - start, len(subset)))

    def _strategy(self, method: str, epochs: int) -> Any:
        r = RECIPES[method]
        cfg = TrainConfig(model=self.model_spec, data=self.bundle.source, strategy="full", epochs=epochs,
                          lr=r.lr[self.modality], head_lr_scale=r.head_lr_scale, weight_decay=r.weight_decay,
                          bn=r.bn, patience=r.patience, label_smoothing=r.label_smoothing)
        return get_strategy("full", cfg)

    def end_to_end_point(self, method: str, seed: int, size: int, budget: float) -> dict[str, Any]:
        r = RECIPES[method]
        start = time.perf_counter()
        subset = self.bundle.train.subset(self.subsets[seed][size])
        epochs = self._epochs(method, budget, len(subset))
        model = self._model(method, seed)
        strategy = self._strategy(method, epochs)
        strategy.prepare(model)
        generator = seed_everything(seed)
        batch = TrainConfig(model="-", data="-").with_data_defaults(len(subset)).batch_size
        ctx = self.ctx
        train_loader = make_loader(model, subset, batch_size=batch, train=True, augment=r.augment, generator=generator,
                                   ctx=ctx)
        val_loader = make_loader(model, self.e2e_val, batch_size=self.eval_batch, ctx=ctx)
        deadline = start + 1.3 * budget if math.isfinite(budget) else None
        settings = LoopSettings(epochs=epochs, weight_decay=r.weight_decay, warmup_fraction=r.warmup_fraction,
                                label_smoothing=r.label_smoothing, patience=r.patience, device=self.device,
                                deadline=deadline, dist=ctx, seed=seed)
        result = fit(model, train_loader, val_loader, strategy.param_groups(model), settings,
                     phase=Phase.FINE_TUNE, label=method,
                     progress=self.progress, on_epoch_start=strategy.on_epoch_start, generator=generator)
        test_start = time.perf_counter()
        test_loader = make_loader(model, self.bundle.test, batch_size=self.eval_batch, ctx=ctx)
        logits, labels = gather_predictions(ctx, *predict_logits(model, test_loader, self.device))
        self.clock.observe(method, evaluate=(time.perf_counter() - test_start, len(self.bundle.test)))
        epochs_seconds = sum(h.seconds for h in result.history) - len(result.history) * len(self.e2e_val) * self.clock.eval_s[method]
        self.clock.observe(method, train=(epochs_seconds, len(result.history) * len(subset)))
        return {"accuracy": (logits.argmax(1) == labels).float().mean().item() if ctx.main else float("nan"),
                "val_accuracy": result.best_val_accuracy, "epochs": result.epochs_run,
                "max_epochs": epochs, "best_epoch": result.best_epoch, "budget_seconds": round(budget, 1) if math.isfinite(budget) else None,
                "image_size": self.image_size, "warnings": result.warnings,
                "seconds": time.perf_counter() - start}


def _check_sizes(bundle: DataBundle, sizes: list[int], data: str) -> None:
    counts = bundle.train.class_counts(bundle.num_classes)
    low = min(range(len(counts)), key=lambda c: counts[c])
    if sizes[-1] > counts[low]:
        raise DataError(
            f"per_class: {sizes[-1]} examples per class exceeds the data: the training split of {data} has "
            f"only {counts[low]} examples of class {bundle.classes[low]!r} (classes have "
            f"{min(counts)}-{max(counts)}). Use sizes up to {counts[low]}, or lower --val-fraction/--test-fraction."
        )


def _plan(seeds: list[int], sizes: list[int], methods: list[str]) -> list[tuple[int, int, str]]:
    return [(s, n, m) for s in seeds for n in sizes for m in METHODS if m in methods]


def _share(study: _Study, plan: list[tuple[int, int, str]], i: int, weights: dict[Any, float]) -> float:
    """Point ``i``'s seconds: its fixed cost plus a weighted share of what the remaining points'
    fixed costs leave of the budget."""
    left = [p for p in plan[i:] if p in weights]
    n_test = len(study.bundle.test)
    free = study.clock.left() - sum(study.clock.fixed(m, n_test) for _, _, m in left)
    return max(0.0, free) * weights[plan[i]] / sum(weights[p] for p in left) + study.clock.fixed(plan[i][2], n_test)


def _run_points(study: _Study, plan: list[tuple[int, int, str]], out_dir: Path) -> None:
    weights = {(s, n, m): math.sqrt(n * study.num_classes) * RECIPES[m].weight
               for s, n, m in plan if m in RECIPES}
    if study.clock.budget is not None:
        for method in dict.fromkeys(m for _, _, m in plan if m in RECIPES):
            study.calibrate(method)
    for i, (seed, size, method) in enumerate(plan):
        base = {"per_class": size, "seed": seed, "method": method,
                "n_train": len(study.subsets[seed][size])}
        if method == "feature-extraction":  # rank 0 alone: it holds the cached features
            point = study.ctx.broadcast_object(study.feature_point(seed, size) if study.ctx.main else None)
        else:
            if study.ctx.broadcast_object(study.clock.left() <= 0):
                study.points.append({**base, "status": "skipped (time budget)", "accuracy": None})
                continue
            point = study.ctx.broadcast_object(
                study.end_to_end_point(method, seed, size, _share(study, plan, i, weights)))
        rounded = {k: round(point[k], 4) for k in ("accuracy", "val_accuracy", "seconds") if k in point}
        point = {**base, "status": "ok", **point, **rounded}
        study.points.append(point)
        log.info("efficiency: seed %d, %d/class, %s: test accuracy %.4f (%.1f s)", seed, size, method,
                 point["accuracy"], point["seconds"])
        if study.ctx.main:
            atomic_write_json(out_dir / EFFICIENCY_JSON, study.points)  # a killed study keeps what finished


def sample_efficiency(model: str, data: str | DataOptions, *,
                      per_class: str | Sequence[int] = (5, 10, 20, 50, 100),
                      seeds: int | Sequence[int] = 3, methods: Sequence[str] = METHODS,
                      out: str | Path | None = None, time_budget: float | None = DEFAULT_TIME_BUDGET,
                      device: str = "auto", progress: bool | None = None, nproc: int | None = None,
                      **data_options: Any) -> EfficiencyResult:
    """Train transfer and from-scratch models on growing subsets and measure the data multiplier.

    Args:
        model: model spec, e.g. ``builtin:efficientnet_lite0``.
        data: data spec or :class:`DataOptions`; the split is made once (with its seed, 0 by
            default), subsets are nested per seed. Its ``image_size`` is the end-to-end points'
            input size (default ``auto``; feature extraction always uses the model's own).
        per_class: strictly increasing training-set sizes, examples per class.
        seeds: how many seeds (0, 1, ...) or the seeds themselves; a seed picks the subsets,
            the head initialisation and the batches.
        methods: any of ``feature-extraction``, ``fine-tune``, ``scratch``.
        out: folder for efficiency.json, efficiency_summary.json, efficiency.md, efficiency.png.
        time_budget: seconds for the whole command (``None``: every point runs its epoch cap).
        nproc: train the end-to-end points data-parallel in this many local processes (feature
            extraction runs on the first); the results are those of one process up to BatchNorm's
            per-process statistics on a CPU.
        **data_options: DataOptions fields applied to ``data`` (val_fraction, test_fraction,
            text_column, label_column, path_column, image_size, seed).

    Returns:
        An :class:`EfficiencyResult`.

    Example:
        >>> r = sample_efficiency("builtin:efficientnet_lite0", "builtin:mnist",
        ...                       per_class="10,30,100,300", seeds=2)  # doctest: +SKIP
        >>> r.summary["headline"][0]  # doctest: +SKIP
        '10/class: transfer (fine-tune, 0.912) matches from-scratch training on about 24x the data (240/class)'
    """
    sizes = parse_int_list(per_class, "per_class")
    seed_list = list(range(seeds)) if isinstance(seeds, int) and not isinstance(seeds, bool) else list(seeds)
    if not seed_list or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seed_list):
        raise ConfigError(f"seeds: give a number of seeds >= 1 or a list of seeds >= 0, got {seeds!r}.")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConfigError(f"methods: {', '.join(unknown) or 'none given'}; choose from {', '.join(METHODS)}.")
    if time_budget is not None and not time_budget > 0:
        raise ConfigError(f"time_budget: must be a positive number of seconds, got {time_budget!r}.")
    opts = as_data_options(data, **data_options)
    if opts.per_class is not None:
        raise ConfigError("per_class: sample_efficiency takes its training-set sizes as per_class= (a list); "
                          "leave the data options' per_class unset.")
    if nproc is not None and nproc > 1 and not in_launched_worker():
        resolve_device(device)  # a missing device fails here, not in every worker
        return launch(_efficiency_worker, (model, opts, sizes, seed_list, list(methods), out, time_budget, device,
                                           progress), nproc)
    with session(resolve_device(device)) as ctx:
        return _sample_efficiency(model, opts, sizes, seed_list, list(methods), out, time_budget, device,
                                  progress, ctx)


def _efficiency_worker(model: str, opts: DataOptions, sizes: list[int], seeds: list[int], methods: list[str],
                       out: str | Path | None, time_budget: float | None, device: str,
                       progress: bool | None) -> EfficiencyResult:
    """What each launched worker runs (module level: the spawned process imports it)."""
    with session(resolve_device(device)) as ctx:
        return _sample_efficiency(model, opts, sizes, seeds, methods, out, time_budget, device, progress, ctx)


def _sample_efficiency(model: str, opts: DataOptions, sizes: list[int], seed_list: list[int], methods: list[str],
                       out: str | Path | None, time_budget: float | None, device: str, progress: bool | None,
                       ctx: Distributed) -> EfficiencyResult:
    data = opts.data
    clock = _Clock(time_budget)
    bundle = load_data(opts)
    _check_sizes(bundle, sizes, data)
    if len(bundle.val) == 0 or len(bundle.test) == 0:
        raise DataError(f"The data {data} leaves no validation or test examples; raise --val-fraction / "
                        "--test-fraction or add data.")
    out_dir = ctx.broadcast_object(  # rank 0 makes the folder and writes it
        prepare_out(out, "efficiency", model, (EFFICIENCY_JSON, EFFICIENCY_SUMMARY)) if ctx.main else None)
    study = _Study(model, bundle, sizes, seed_list, list(methods), opts.image_size, clock, device,
                   Progress(progress if ctx.main else False), ctx)
    if "feature-extraction" in methods and ctx.main:
        study.encode()
    _run_points(study, _plan(seed_list, sizes, list(methods)), out_dir)
    multipliers = data_multipliers(study.points)
    summary = {"model": model, "data": data, "per_class": sizes, "seeds": seed_list, "methods": list(methods),
               "classes": bundle.num_classes, "n_val": len(study.val), "n_val_end_to_end": len(study.e2e_val),
               "n_test": len(bundle.test),
               "image_size": study.image_size, "time_budget": time_budget,
               "encode_seconds": study.cache.get("seconds"),
               "seconds": round(time.perf_counter() - clock.start, 1),
               "recipes": {m: {**vars(r), "lr": r.lr[bundle.modality]} for m, r in RECIPES.items() if m in methods},
               "multipliers": multipliers, "headline": headline(multipliers)}
    if ctx.main:
        write_outputs(out_dir, study.points, summary)
    return EfficiencyResult(out_dir, study.points, multipliers, summary)
