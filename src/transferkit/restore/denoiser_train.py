"""``transferkit denoiser train``: adapt a DRUNet denoiser to the user's own kind of images.

A few clean images of one domain (microscopy, documents, digits...) are cut into noisy/clean patch
pairs with the pre-training recipe (``restore.patches``: random crops at three scales, flips,
quarter turns, Gaussian noise with a per-patch level in [0, ``max_sigma``]) and the denoiser is
trained on them with an L1 loss, Adam and a cosine schedule, by one of three strategies:

- ``full``: every weight trains (from ``builtin:drunet``, a weights file, or ``none``: scratch);
- ``lora``: LoRA adapters on every ``nn.Conv2d``; the base weights and the ``ConvTranspose2d``
  upsamplers stay frozen (LoRA does not wrap transposed convolutions, and freezing them keeps the
  update low-rank everywhere); the adapters are merged into the weights before saving;
- ``last-n``: only the last ``last_n`` of DRUNet's nine stages (counted from the output end of
  ``m_head, m_down1..3, m_body, m_up3..1, m_tail``) train.

The run folder::

    denoiser.json          kind "denoiser": the resolved config and the record (PSNR before/after...)
    denoiser.safetensors   the full DRUNet state_dict (LoRA merged): loads with drunet_from_state_dict
    metrics.jsonl          one line per logged step: step, l1, seconds
    train.log              the same, as text

Example:
    >>> result = train_denoiser(DenoiserTrainConfig(images=Path("my_images"), out=Path("runs/d"),
    ...                                             steps=400))  # doctest: +SKIP
    >>> load_denoiser_run(result.folder)(noisy, 25 / 255)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from .._version import __version__
from ..errors import (
    ConfigError,
    DataError,
    RunFolderError,
    TrainingDivergedError,
    WeightsMismatchError,
)
from ..io import runfolder as rf
from ..io.atomic import (
    atomic_save_weights,
    atomic_write_json,
    atomic_write_text,
    load_weights,
)
from ..io.runfolder import default_folder, new_empty_folder
from ..lora import apply_lora, merged_state_dict
from . import drunet, patches
from .images import read_image

__all__ = ["STAGES", "STRATEGIES", "DenoiserRunResult", "DenoiserTrainConfig", "default_lr", "is_denoiser_run",
           "load_denoiser_run", "train_denoiser"]

STRATEGIES = ("full", "lora", "last-n")
#: DRUNet's stages, input to output; ``last-n`` trains the last ``last_n`` of them.
STAGES = ("m_head", "m_down1", "m_down2", "m_down3", "m_body", "m_up3", "m_up2", "m_up1", "m_tail")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
RECORD, WEIGHTS, METRICS, LOG = "denoiser.json", "denoiser.safetensors", "metrics.jsonl", "train.log"
KIND, SCHEMA_VERSION = "denoiser", 1
#: Noise levels (on the 0-255 scale) of the PSNR figures before and after training.
EVAL_SIGMAS = (15, 25, 50)
# Learning rates measured on 10 upscaled MNIST digits (benchmarks/denoiser_transfer.py, held-out PSNR). 200
# steps: full 3e-5 < 1e-4 < 3e-4 ~ 1e-3; lora 3e-4 < 1e-3 < 3e-3, 1e-2 diverges; last-n 1e-4 < 3e-4 < 1e-3;
# scratch 3e-3 diverges. 400 steps (the default): scratch 1e-3 beats 3e-4 by 0.7-1.4 dB.
_LR = {"full": 3e-4, "lora": 2e-3, "last-n": 1e-3, "scratch": 1e-3}


def default_lr(strategy: str, start: str) -> float:
    """The learning rate used when ``lr`` is None.

    Example:
        >>> default_lr("full", "builtin:drunet"), default_lr("full", "none")
        (0.0003, 0.001)
    """
    return _LR["scratch"] if start == "none" else _LR[strategy]


@dataclass
class DenoiserTrainConfig:
    """What ``transferkit denoiser train`` does, validated on creation.

    Attributes:
        images: a folder of clean images (png, jpg, jpeg, bmp, tif, tiff, webp; searched recursively).
        out: the run folder (must not exist or be empty); None: ``runs/denoiser-<from>-<strategy>-<time>``.
        start: ``builtin:drunet``, ``none`` (scratch, the built-in shape), a DRUNet weights file
            (.pth/.pt read with ``weights_only=True``, or .safetensors) or a denoiser run folder.
        strategy: ``full``, ``lora`` or ``last-n``.
        steps: optimiser steps (each ``batch_size`` patches).
        batch_size, patch: patches per step and their side (a multiple of 8: DRUNet halves it 3 times).
        lr: Adam's learning rate, cosine-decayed to 1% of it; None: :func:`default_lr`.
        lora_rank: LoRA's rank (``lora``; alpha is twice the rank).
        last_n: stages that train under ``last-n``, 1-9, counted from the output end.
        seed: seeds the patches, the noise and any random initialisation.
        max_sigma: the largest training noise level, on the 0-1 scale.

    Example:
        >>> DenoiserTrainConfig(images=Path("imgs"), strategy="lora").lora_rank
        8
    """

    images: Path
    out: Path | None = None
    start: str = "builtin:drunet"
    strategy: str = "full"
    steps: int = 400
    batch_size: int = 8
    patch: int = 64
    lr: float | None = None
    lora_rank: int = 8
    last_n: int = 3
    seed: int = 0
    max_sigma: float = field(default=patches.MAX_SIGMA)

    def __post_init__(self) -> None:
        self.images = Path(self.images)
        self.out = None if self.out is None else Path(self.out)
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy: unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)} "
                              "(--strategy full trains every weight).")
        if not isinstance(self.start, str) or not self.start.strip():
            raise ConfigError(f"start: {self.start!r} is not a source; give builtin:drunet, none, or a DRUNet "
                              "weights file (.pth or .safetensors).")
        if self.start == "none" and self.strategy != "full":
            raise ConfigError(f"strategy: {self.strategy} adapts pre-trained weights, but --from none starts from "
                              "random ones; use --strategy full with --from none, or --from builtin:drunet.")
        for name, low, high in (("steps", 1, 10**7), ("batch_size", 1, 4096), ("patch", 16, 1024),
                                ("lora_rank", 1, 512), ("last_n", 1, len(STAGES)), ("seed", 0, 2**63 - 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name}: must be a whole number from {low} to {high}, got {value!r}.")
        if self.patch % 8:
            raise ConfigError(f"patch: must be a multiple of 8 (DRUNet halves the image three times), got "
                              f"{self.patch}; try {max(16, self.patch // 8 * 8)}.")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr)
                                        and 0 < self.lr < 1):
            raise ConfigError(f"lr: must be a number in (0, 1), got {self.lr!r}; leave it out for the default "
                              f"({default_lr(self.strategy, self.start):g} here).")
        if not (isinstance(self.max_sigma, (int, float)) and 0 < self.max_sigma <= 1):
            raise ConfigError(f"max_sigma: must be in (0, 1] (the 0-1 scale; 50/255 = {patches.MAX_SIGMA:.4f} "
                              f"is the default), got {self.max_sigma!r}.")

    def resolved_lr(self) -> float:
        """``lr``, or the default for this strategy and start."""
        return float(self.lr) if self.lr is not None else default_lr(self.strategy, self.start)


@dataclass(frozen=True)
class DenoiserRunResult:
    """What a training run gives back; ``psnr_*`` map a noise level (0-255 scale) to the mean PSNR (dB)
    on fixed crops of the *training* images: a progress figure, not a held-out score."""

    folder: Path
    psnr_before: dict[int, float]
    psnr_after: dict[int, float]
    seconds: float
    trainable_params: int
    total_params: int


class StepRecord(TypedDict):
    """One line of ``metrics.jsonl`` (and one progress call)."""

    step: int
    steps: int
    l1: float
    seconds: float


def read_images(folder: Path) -> dict[str, torch.Tensor]:
    """Every image under ``folder`` as float [C, H, W] (C 1 or 3), by its path relative to ``folder``.

    Raises:
        DataError: the folder is missing or holds no image; a file that does not decode or is
            smaller than 8x8 (named).
    """

    if not folder.is_dir():
        raise DataError(f"images: {folder} is not a folder. Give a folder of clean images of your domain "
                        f"({', '.join(s[1:] for s in IMAGE_SUFFIXES)}; sub-folders are searched too).")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise DataError(f"images: {folder} holds no image files ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}, "
                        "searched recursively). Put at least one clean image of your domain there; 10 or more "
                        "are better.")
    # [C, H, W] each; an unreadable file or one under 8x8 is a DataError naming it
    images = {str(path.relative_to(folder)): read_image(path)[0] for path in files}
    return images


def _load_start(start: str) -> nn.Module:
    """The model training starts from (train mode)."""
    if start == "none":
        return drunet.BUILTIN_SHAPE.build()
    if start == "builtin:drunet":
        return drunet.load_builtin()
    path = Path(start)
    if path.is_dir() and is_denoiser_run(path):
        return load_denoiser_run(path)
    if not path.is_file():
        raise ConfigError(f"start: {start} is neither builtin:drunet, none, a denoiser run folder nor an existing "
                          "weights file. Give --from builtin:drunet, --from none, or the path of a DRUNet "
                          ".pth/.safetensors file.")
    state = drunet.read_weights_file(path)
    return drunet.drunet_from_state_dict(state, str(path))


def _trainable(model: nn.Module, config: DenoiserTrainConfig) -> list[nn.Parameter]:
    """Set ``requires_grad`` by strategy; return the parameters that train."""
    if config.strategy == "lora":
        model.requires_grad_(False)  # ConvTranspose2d upsamplers stay frozen too (see module docstring)
        apply_lora(model, rank=config.lora_rank, alpha=2.0 * config.lora_rank, targets="all")
    elif config.strategy == "last-n":
        model.requires_grad_(False)
        for stage in STAGES[-config.last_n:]:
            getattr(model, stage).requires_grad_(True)
    else:
        model.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def _psnr(model: nn.Module, images: list[torch.Tensor], channels: int, patch: int) -> dict[int, float]:
    model.eval()
    with torch.no_grad():
        return {s: round(patches.psnr_on_crops(model, images, s / 255, channels, crops=8, patch=patch), 3)
                for s in EVAL_SIGMAS}


def train_denoiser(config: DenoiserTrainConfig,
                   progress: Callable[[StepRecord], None] | None = None) -> DenoiserRunResult:
    """Train a denoiser on ``config.images`` and write its run folder.

    Args:
        config: what to train (see :class:`DenoiserTrainConfig`).
        progress: called with each logged :class:`StepRecord` (about every 5% of the steps).

    Returns:
        The folder, PSNR before and after on fixed crops of the training images at sigma
        15/25/50, the seconds the training took, and the trainable and total parameter counts.

    Raises:
        DataError, ConfigError, WeightsMismatchError, RunFolderError: bad input; nothing is written.

    Example:
        >>> r = train_denoiser(DenoiserTrainConfig(images=Path("digits"), out=Path("runs/d"),
        ...                                       strategy="lora", steps=400))  # doctest: +SKIP
        >>> r.psnr_after[25] > r.psnr_before[25]  # doctest: +SKIP
        True
    """
    out = config.out
    if out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        new_empty_folder(out, "Denoiser run folder")  # raises the usual error before any work
    images = read_images(config.images)
    torch.manual_seed(config.seed)  # scratch weights and LoRA factors
    model = _load_start(config.start).train()
    channels = drunet.shape_of(model.state_dict(), config.start).channels
    total = sum(p.numel() for p in model.parameters())
    eval_images = list(images.values())
    eval_patch = max(16, min(128, min(min(i.shape[1:]) for i in eval_images) // 8 * 8))
    before = _psnr(model, eval_images, channels, eval_patch)
    params = _trainable(model, config)
    lr = config.resolved_lr()

    folder = new_empty_folder(out, "Denoiser run folder") if out is not None else new_empty_folder(
        default_folder(config.start if config.start in ("none", "builtin:drunet") else Path(config.start).stem,
                       kind=KIND, strategy=config.strategy), unique=True)
    with _running(folder) as write_log:
        pyramid = patches.image_pyramid(eval_images)
        weights = patches.sampling_weights(pyramid)
        generator = torch.Generator().manual_seed(config.seed)
        optimizer = torch.optim.Adam(params, lr=lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps, eta_min=lr / 100)
        every = max(1, config.steps // 20)
        lines: list[str] = []
        write_log(f"denoiser train: {len(images)} images from {config.images}, from {config.start}, strategy "
                  f"{config.strategy}, {sum(p.numel() for p in params)} of {total} parameters train, lr {lr:g}")
        write_log(f"psnr before (training-image crops): {before}")
        model.train()
        started, running, count = time.perf_counter(), 0.0, 0
        for step in range(1, config.steps + 1):
            clean = patches.sample_batch(pyramid, weights, config.batch_size, config.patch, generator, channels)
            noisy, sigma = patches.add_noise(clean, generator, config.max_sigma)
            loss = F.l1_loss(model(noisy, sigma), clean)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running, count = running + float(loss.detach()), count + 1
            if step % every == 0 or step == config.steps:
                record = StepRecord(step=step, steps=config.steps, l1=round(running / count, 6),
                                    seconds=round(time.perf_counter() - started, 2))
                if not math.isfinite(record["l1"]):
                    raise TrainingDivergedError(f"The training loss became {record['l1']} at step {step}; lower --lr "
                                           f"(it was {lr:g}). The folder {folder} holds the log so far.")
                lines.append(json.dumps(record))
                write_log(f"step {step}/{config.steps}  l1 {record['l1']:.5f}  {record['seconds']:.1f} s")
                atomic_write_text(folder / METRICS, "\n".join(lines) + "\n")
                if progress is not None:
                    progress(record)
                running, count = 0.0, 0
        seconds = round(time.perf_counter() - started, 2)

        state = merged_state_dict(model)  # LoRA: W + s B A, plain DRUNet keys
        final = drunet.drunet_from_state_dict(state, "the trained model")
        after = _psnr(final, eval_images, channels, eval_patch)
        trainable = sum(p.numel() for p in params)
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
        settings["lr"] = lr
        settings["out"] = str(folder)
        atomic_save_weights(folder / WEIGHTS, state)
        atomic_write_json(folder / RECORD, {
            "schema_version": SCHEMA_VERSION, "kind": KIND, "config": settings,
            "record": {"from": config.start, "strategy": config.strategy, "steps": config.steps, "seconds": seconds,
                       "trainable_params": trainable, "total_params": total, "channels": channels,
                       "psnr_before": before, "psnr_after": after,
                       "psnr_note": "mean PSNR (dB) at sigma 15/25/50 on 8 fixed crops of the training images",
                       "images": len(images), "image_files": list(images), "transferkit_version": __version__}})
        write_log(f"psnr after (training-image crops): {after}")
        write_log(f"wrote {folder / WEIGHTS} after {seconds} s")
        return DenoiserRunResult(folder=folder, psnr_before=before, psnr_after=after, seconds=seconds,
                                 trainable_params=trainable, total_params=total)


@contextlib.contextmanager
def _running(folder: Path) -> Iterator[Callable[[str], None]]:
    """Hold the folder's running lock on train.log (as training runs do, so the dashboard tells a
    run training now from an interrupted one), give a function that appends one line to that log,
    and record an error that ends the run in failure.json (shown as failed)."""
    with rf.hold_running_lock(folder), open(folder / LOG, "a", encoding="utf-8") as handle:
        def write_log(line: str) -> None:
            handle.write(line + "\n")
            handle.flush()

        try:
            yield write_log
        except Exception as exc:
            atomic_write_json(folder / rf.FAILURE, {"error": " ".join(str(exc).split()), "type": type(exc).__name__})
            raise


def is_denoiser_run(folder: str | Path) -> bool:
    """Whether ``folder`` looks like a ``transferkit denoiser train`` run (its record names the kind).

    Example:
        >>> is_denoiser_run("no/such/folder")
        False
    """
    try:
        return json.loads((Path(folder) / RECORD).read_text(encoding="utf-8")).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


def load_denoiser_run(folder: str | Path) -> nn.Module:
    """The trained DRUNet of a denoiser run folder, in eval mode.

    Raises:
        RunFolderError: the folder, its record or its weights are missing or damaged.

    Example:
        >>> model = load_denoiser_run("runs/denoiser-drunet-full-20260101-120000")  # doctest: +SKIP
        >>> denoised = model(noisy, 25 / 255)  # doctest: +SKIP
    """
    folder = Path(folder)
    fix = "Train it again with `transferkit denoiser train`, or give another run folder."
    if not (folder / RECORD).is_file() or not (folder / WEIGHTS).is_file():
        missing = [n for n in (RECORD, WEIGHTS) if not (folder / n).is_file()]
        raise RunFolderError(f"{folder} is not a finished denoiser run: {', '.join(missing)} missing. {fix}")
    if not is_denoiser_run(folder):
        raise RunFolderError(f"{folder / RECORD} is damaged or not a denoiser record (no kind \"denoiser\"). {fix}")
    state = load_weights(folder / WEIGHTS)
    try:
        return drunet.drunet_from_state_dict(state, str(folder / WEIGHTS))
    except WeightsMismatchError as exc:
        raise RunFolderError(f"{folder / WEIGHTS} is damaged: {exc}") from None
