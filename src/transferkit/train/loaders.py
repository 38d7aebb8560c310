"""DataLoaders for a model and a split: image transforms or tokenisation from the ModelSpec."""

from __future__ import annotations

import logging
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..data import (
    DecodedCache,
    DecodedImages,
    ImageDataset,
    Split,
    TextCollator,
    TextDataset,
    build_image_transform,
    resolve_image_size,
)
from ..errors import ConfigError
from .distributed import SINGLE, Distributed, GlobalBatchSampler, PaddedDataset

log = logging.getLogger("transferkit")


class _Indexed(Dataset):
    """Wraps a dataset so each item also carries its position: (x, label, index)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Any, int, int]:
        x, y = self.dataset[i]
        return x, y, i


class _IndexedCollate:
    """Collates (x, y, i) triples with an inner collate for (x, y) pairs."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, batch: list[tuple[Any, int, int]]) -> tuple[Any, torch.Tensor, torch.Tensor]:
        pairs = [(x, y) for x, y, _ in batch]
        inputs, labels = self.inner(pairs) if self.inner else torch.utils.data.default_collate(pairs)
        return inputs, labels, torch.tensor([i for _, _, i in batch], dtype=torch.long)


# Images each rank decodes between two swaps of a distributed fill: one all_gather_object
# holds about this many decoded images from every rank (224-px resizes: ~40 MB a rank).
SWAP_CHUNK = 256


def fill_across_ranks(store: DecodedImages, ctx: Distributed, num_workers: int = 0) -> int:
    """Decode a split's missing images once over all ranks: each decodes every ``world``-th
    image of each chunk, the ranks swap them, and every rank keeps them all (before, each rank
    decoded the whole split: 8 GPUs, 8 times the host's decoding). Returns this rank's decodes."""
    todo = ctx.broadcast_object(store.missing())  # rank 0's list, the same order everywhere
    mine = 0
    for start in range(0, len(todo), SWAP_CHUNK):
        chunk = todo[start : start + SWAP_CHUNK]
        decoded = list(store.decode_each(chunk[ctx.rank :: ctx.world], num_workers))
        mine += len(decoded)
        for pairs in ctx.all_gather_object(decoded):
            for i, image in pairs:
                store.keep(i, image)
    return mine


def _dataset_and_collate(model: Any, split: Split, train: bool, augment: bool,
                         decoded: DecodedCache | None = None, num_workers: int = 0,
                         ctx: Distributed | None = None) -> tuple[Dataset, Any]:
    """``ctx``: a distributed run's training split, whose store every rank fills before the
    first batch (a rank's chunks of the shuffled global batches change every epoch)."""
    spec = model.spec
    if spec.modality == "image":
        transform = build_image_transform(spec.image, train=train, augment=augment)
        store = decoded.store(split, spec.image) if decoded is not None else None
        if store is not None and ctx is not None and ctx.enabled:
            decodes = fill_across_ranks(store, ctx, num_workers)
            log.info("decoded-image cache: this rank decoded %d of the %d images its ranks shared",
                     decodes, len(store))
        elif store is not None and num_workers > 0:  # a worker's decodes would be lost with it
            store.fill(num_workers)
        return ImageDataset(split, transform, cache=store), None
    return TextDataset(split), TextCollator(model.tokenizer(), spec.text.max_length)


def _eval_dataset(model: Any, split: Split, ctx: Distributed, decoded: DecodedCache | None,
                  num_workers: int) -> tuple[Dataset, Any]:
    """This rank's contiguous shard of ``split`` in eval mode; the decoded-image cache is kept
    per whole split (the same store every epoch), so the shard is a view of its dataset."""
    if decoded is None or model.spec.modality != "image":
        split = split.subset(ctx.shard(len(split))) if ctx.enabled else split
        return _dataset_and_collate(model, split, False, False)
    dataset, collate = _dataset_and_collate(model, split, False, False, decoded, num_workers)
    return (Subset(dataset, ctx.shard(len(split))) if ctx.enabled else dataset), collate


def make_loader(
    model: Any,
    split: Split,
    *,
    batch_size: int,
    train: bool = False,
    augment: bool = False,
    generator: torch.Generator | None = None,
    num_workers: int = 0,
    ctx: Distributed = SINGLE,
    pin_memory: bool = False,
    decoded: DecodedCache | None = None,
) -> DataLoader:
    """A loader of ``(inputs, labels)`` batches preprocessed the way ``model.spec`` says.

    ``train``: shuffled global batches of ``batch_size``, this rank's chunk of each
    (:class:`GlobalBatchSampler`; one process: the whole batch). Otherwise this rank's
    contiguous shard of the split, in order (``Distributed.gather_rows`` joins the results).
    ``pin_memory`` (CUDA): batches in page-locked memory, so the copy to the GPU overlaps the
    step; workers then prefetch four batches each and live across epochs.
    ``decoded``: images are decoded and resized once into this cache (the run's).
    """
    feeding = _feeding(num_workers, pin_memory)
    if not train:
        dataset, collate = _eval_dataset(model, split, ctx, decoded, num_workers)
        return DataLoader(dataset, batch_size=batch_size, collate_fn=collate, **feeding)
    dataset, collate = _dataset_and_collate(model, split, train, augment, decoded, num_workers, ctx=ctx)
    batches = GlobalBatchSampler(len(split), batch_size, ctx, generator=generator)
    return DataLoader(
        PaddedDataset(dataset) if ctx.enabled else dataset, batch_sampler=batches,
        generator=generator, collate_fn=collate, **feeding,
    )


def _feeding(num_workers: int, pin_memory: bool) -> dict[str, Any]:
    """DataLoader settings that keep a GPU fed: workers, pinned memory, prefetching."""
    options: dict[str, Any] = {"num_workers": num_workers, "pin_memory": pin_memory}
    if num_workers > 0 and pin_memory:
        options.update(prefetch_factor=4, persistent_workers=True)
    return options


class _LengthBatches:
    """Index batches of texts of similar length, so padding (wasted compute) stays small."""

    def __init__(self, split: Split, batch_size: int) -> None:
        order = sorted(range(len(split)), key=lambda i: len(split.items[i]))
        self.batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)


def make_indexed_loader(
    model: Any, split: Split, *, batch_size: int, num_workers: int = 0, ctx: Distributed = SINGLE
) -> DataLoader:
    """Eval-mode batches of ``(inputs, labels, indices)`` for encoding a split once (with
    ``ctx``: this rank's contiguous shard; indices count from the shard's start).

    Texts are grouped by length (then put back in order by ``indices``); images keep their order.
    """
    if ctx.enabled:
        split = split.subset(ctx.shard(len(split)))
    dataset, collate = _dataset_and_collate(model, split, train=False, augment=False)
    indexed = _Indexed(dataset)
    if model.spec.modality == "text":
        return DataLoader(indexed, batch_sampler=_LengthBatches(split, batch_size),
                          collate_fn=_IndexedCollate(collate), num_workers=num_workers)
    return DataLoader(indexed, batch_size=batch_size, collate_fn=_IndexedCollate(collate),
                      num_workers=num_workers)


def apply_image_size(model: Any, option: int | str | None, split: Split) -> int | None:
    """Set an image model's input size from ``DataOptions.image_size`` (``split``: the training
    images ``auto`` looks at); returns the pixels chosen, or ``None`` when no size was asked for.

    The ModelSpec's preprocessing changes, so every loader (and a saved run: evaluate, predict,
    export) feeds that size.

    Raises:
        ConfigError: a size was asked for a text model.
    """
    if option is None:
        return None
    if model.spec.image is None:
        raise ConfigError(f"image_size: applies to image models, but {model.spec.spec_string} takes text; "
                          "drop --image-size.")
    size = resolve_image_size(option, split, model.spec.image.crop_size)
    model.spec.image = model.spec.image.at_size(size)
    return size
