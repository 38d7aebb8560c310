"""Inference on a finished run folder: load it, evaluate it on data, predict with it.

This layer sits above ``train`` (it uses the loaders and the loop's ``predict_logits``) and
below ``export`` (which loads the run it exports through :func:`load_run`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .config import TrainConfig
from .data import Split, image_inputs, load_eval_split, set_max_image_pixels, unreadable_images
from .data.table_cells import resolve_path, table_folder
from .data.tables import TABLE_EXTENSIONS, read_column
from .errors import ConfigError, RunFolderError, UnreadableImagesError
from .io import runfolder as rf
from .io.atomic import load_weights
from .models import ModelSpec, TransferModel, build_model_from_spec
from .train.device import inference_batch_size, prepare_model_layout, resolve_device
from .train.loaders import make_loader
from .train.loop import predict_logits
from .train.metrics import classification_metrics


@dataclass
class Run:
    """A finished run loaded from its folder: the model (eval mode, best weights) and its config."""

    run_dir: Path
    model: TransferModel
    config: TrainConfig
    labels: list[str] = field(default_factory=list)


def load_run(run_dir: str | Path, device: str = "cpu") -> Run:
    """Load a run folder written by :func:`transferkit.train`, offline.

    Example:
        >>> run = load_run("runs/efficientnet_lite0-feature-extraction-20261127-120000")  # doctest: +SKIP
        >>> run.model.spec.labels[:3]  # doctest: +SKIP
        ['0', '1', '2']
    """
    run_dir = rf.check_run_folder(Path(run_dir))
    torch_device = resolve_device(device)  # a device that is not there fails before any loading
    try:
        spec = ModelSpec.from_dict(json.loads((run_dir / rf.MODEL_SPEC).read_text(encoding="utf-8")))
        config = TrainConfig.load(run_dir / rf.CONFIG)
    except (ValueError, TypeError, KeyError) as exc:
        raise RunFolderError(f"Run folder {run_dir} has an unreadable model_spec.json or config.yaml ({exc}); train again.") from None
    model = build_model_from_spec(spec, run_dir / rf.ASSETS)
    try:
        model.load_state_dict(load_weights(run_dir / rf.WEIGHTS), strict=True)
    except RuntimeError as exc:
        raise RunFolderError(f"The weights in {run_dir / rf.WEIGHTS} do not fit the model in model_spec.json ({str(exc)[:300]}); train again.") from None
    prepare_model_layout(model, spec.modality).to(torch_device).eval()
    return Run(run_dir, model, config, list(spec.labels))


def evaluate(run_dir: str | Path, data: str | None = None, *, batch_size: int | None = None,
             device: str = "cpu", text_column: str | None = None, label_column: str | None = None,
             path_column: str | None = None, max_image_pixels: int | None = None,
             max_bad_fraction: float | None = None) -> dict[str, Any]:
    """Metrics of a finished run on a dataset.

    With ``data`` equal to the run's own data spec (or ``None``), the run's test split is rebuilt
    with the run's seed and fractions, so training examples are never scored. Other data is scored
    whole (or its ``test`` split if it has one); its labels must be among the run's classes.

    ``text_column``, ``label_column`` and ``path_column`` name the columns of a table ``data``,
    ``max_image_pixels`` caps its images and ``max_bad_fraction`` the share of them that may be
    skipped (default: the run's, those it trained with).

    Returns:
        ``{"accuracy", "macro_f1", "n", "confusion_matrix", "per_class", "classes", "data", "split"}``.

    Example:
        >>> evaluate("runs/my-run", "path/to/new_images")["accuracy"]  # doctest: +SKIP
        0.93
    """
    run = load_run(run_dir, device)
    cfg = run.config
    spec = data or cfg.data
    same = _same_data(spec, cfg.data)
    columns = {k: v for k, v in (("text_column", text_column), ("label_column", label_column),
                                  ("path_column", path_column), ("max_image_pixels", max_image_pixels),
                                  ("max_bad_fraction", max_bad_fraction)) if v is not None}
    split, report = load_eval_split(dataclasses.replace(cfg.data_options, data=spec, **columns), run.labels,
                                    same_as_training=same)
    loader = make_loader(run.model, split, batch_size=batch_size or _batch(run))
    logits, labels = predict_logits(run.model, loader, next(run.model.parameters()).device)
    metrics = classification_metrics(labels.tolist(), logits.argmax(1).tolist(), run.labels)
    metrics.update(data=spec, split="run test split" if same else "all", warnings=report.lines())
    return metrics


def _same_data(a: str, b: str) -> bool:
    """Whether two data specs name the same data (paths compared after resolving)."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def _batch(run: Run) -> int:
    device = next(run.model.parameters()).device
    return inference_batch_size(run.config.batch_size, device, run.model.spec.modality)


def readable_images(inputs: Sequence[Any], max_image_pixels: int) -> tuple[list[Any], dict[str, str]]:
    """Images to predict: folders expanded (every image below them), then split into the
    readable ones and ``{path: reason}`` for those that do not decode or have more than
    ``max_image_pixels`` pixels (the cap then holds for their decoding too)."""
    set_max_image_pixels(max_image_pixels)
    items = image_inputs(inputs)
    bad = unreadable_images(items)
    return [i for i in items if not isinstance(i, (str, os.PathLike)) or os.fspath(i) not in bad], bad


def check_all_read(results: list[dict[str, Any]], unreadable: dict[str, str], n_inputs: int) -> list[dict[str, Any]]:
    """``results``, or ``UnreadableImagesError`` (carrying them) when some images had none."""
    if unreadable:
        raise UnreadableImagesError(unreadable, results, n_inputs)
    return results


#: What ``predict`` reads as a table of inputs (one column: texts, or image paths).
TABLE_SUFFIXES = tuple(TABLE_EXTENSIONS)


def table_inputs(path: str | Path, modality: str, column: str | None = None) -> tuple[list[str], list[str | None]]:
    """The inputs a table holds for :func:`predict`, and their names: ``(texts, "FILE (row N)")``
    for a text model, ``(image paths, None)`` for an image model (relative paths from the table's
    folder, as training reads them). No label column is needed; rows with an empty cell are left out.

    Args:
        path: a .csv, .tsv, .jsonl or .json table.
        modality: the model's, ``text`` or ``image``.
        column: the column to read (default ``text`` or ``path``, as training's default).

    Example:
        >>> texts, names = table_inputs("new_reviews.csv", "text")  # doctest: +SKIP
        >>> names[0]  # doctest: +SKIP
        'new_reviews.csv (row 2)'
    """
    path = Path(path)
    cells = read_column(path, column or ("text" if modality == "text" else "path"))
    if modality == "image":
        folder = table_folder(path)
        return [resolve_path(value, folder) for _, value in cells], [None] * len(cells)
    return [value.strip() for _, value in cells], [f"{path} (row {number})" for number, _ in cells]


def check_top_k(top_k: Any) -> int:
    """Raise ``ConfigError`` unless ``top_k`` is a whole number >= 1 (more than the number of
    classes is fine: every label is listed)."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k: must be a whole number of at least 1 (labels listed per input), got {top_k!r}.")
    return top_k


def top_k_rows(inputs: Sequence[Any], logits: np.ndarray, labels: list[str], top_k: int) -> list[dict[str, Any]]:
    """``predict``'s output rows from logits [N, C]: softmax, then the k best labels per input."""
    probs = torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float32)), dim=1)  # [N, C]
    scores, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
    rows = []
    for item, row_scores, row_idx in zip(inputs, scores.tolist(), indices.tolist()):
        top = [{"label": labels[i], "score": s} for s, i in zip(row_scores, row_idx)]
        rows.append({"input": item, "label": top[0]["label"], "score": top[0]["score"], "top_k": top})
    return rows


def predict(run_dir: str | Path | Run, inputs: Sequence[str], *, top_k: int = 5, device: str = "cpu",
            batch_size: int | None = None, max_image_pixels: int | None = None) -> list[dict[str, Any]]:
    """Top-k labels with probabilities for image files or texts.

    Args:
        run_dir: a run folder, or a :class:`Run` already loaded with :func:`load_run`.
        inputs: image file paths or folders of them, every image below a folder (image
            models), or texts (text models); a table's: :func:`table_inputs`.
        top_k: how many labels to return per input.
        max_image_pixels: images with more pixels are not decoded (default: the run's cap,
            ``DataOptions.max_image_pixels``).

    Returns:
        One dict per input: ``{"input", "label", "score", "top_k": [{"label", "score"}, ...]}``.

    Raises:
        UnreadableImagesError: some images do not decode; the others are predicted all the
            same, and the error carries their results (``.results``) and the reasons (``.unreadable``).

    Example:
        >>> predict("runs/my-run", ["cat.jpg"], top_k=3)[0]["label"]  # doctest: +SKIP
        'cat'
    """
    check_top_k(top_k)
    run = run_dir if isinstance(run_dir, Run) else load_run(run_dir, device)
    unreadable: dict[str, str] = {}
    n_inputs = len(inputs)
    if run.model.spec.modality == "image":
        inputs, unreadable = readable_images(inputs, max_image_pixels or run.config.data_options.max_image_pixels)
        n_inputs = len(inputs) + len(unreadable)
    if not inputs:
        return check_all_read([], unreadable, n_inputs)
    loader = make_loader(run.model, Split(list(inputs), [0] * len(inputs)), batch_size=batch_size or _batch(run))
    logits, _ = predict_logits(run.model, loader, next(run.model.parameters()).device)
    results = top_k_rows(list(inputs), logits.float().numpy(), run.labels, top_k)
    return check_all_read(results, unreadable, n_inputs)
