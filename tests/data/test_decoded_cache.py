"""The decoded-image cache: the same tensors as decoding on the fly, files read once, a memory
bound that holds (the rest spills to an unlinked file)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transferkit.data import (
    DecodedCache,
    DecodedImages,
    ImageDataset,
    Split,
    build_image_transform,
)
from transferkit.data.transforms import image_resize, to_pil_rgb
from transferkit.errors import ConfigError
from transferkit.models.spec import ImagePreprocessing

PRE = ImagePreprocessing(40, 32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic")


def _photo(path: Path, width: int, height: int, seed: int, mode: str = "RGB") -> str:
    """A noisy gradient image (JPEG artefacts and resampling both matter on it)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width)[None, :, None] * np.ones((height, 1, 3))
    arr = np.clip(ramp + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).convert(mode).save(path)
    return str(path)


@pytest.fixture
def split(tmp_path: Path) -> Split:
    """JPEG and PNG files of several sizes and aspect ratios (grey and palette too), and arrays."""
    items: list = [
        _photo(tmp_path / "wide.jpg", 90, 50, 0),
        _photo(tmp_path / "tall.png", 45, 70, 1),
        _photo(tmp_path / "grey.png", 60, 60, 2, "L"),
        _photo(tmp_path / "palette.png", 33, 41, 3, "P"),
        _photo(tmp_path / "small.jpg", 20, 25, 4),  # upsampled to the resize size
        np.random.default_rng(5).integers(0, 256, (8, 8), dtype=np.uint8),
        np.random.default_rng(6).integers(0, 256, (50, 64, 3), dtype=np.uint8),
    ]
    return Split(items=items, labels=list(range(len(items))))


def _tensors(dataset: ImageDataset) -> list[torch.Tensor]:
    return [dataset[i][0] for i in range(len(dataset))]


def test_cached_images_and_eval_tensors_equal_decoding_on_the_fly(split: Split) -> None:
    transform = build_image_transform(PRE)
    store = DecodedCache(limit_mb=16).store(split, PRE)
    cached, plain = ImageDataset(split, transform, cache=store), ImageDataset(split, transform)
    reference = _tensors(plain)
    for epoch in range(2):  # epoch 0 fills the store, epoch 1 reads it
        for got, want in zip(_tensors(cached), reference):
            assert torch.equal(got, want)  # bit for bit
    resize = image_resize(PRE)
    for i, item in enumerate(split.items):
        image = store.get(i)
        assert image.dtype == np.uint8 and image.shape[2] == 3 and min(image.shape[:2]) == 40
        assert np.array_equal(image, np.asarray(resize(to_pil_rgb(item))))
    assert store.decodes == len(split)  # once each, over two epochs and the checks


def test_augmented_tensors_equal_on_the_fly_with_the_same_seed(split: Split) -> None:
    transform = build_image_transform(PRE, train=True, augment=True)
    store = DecodedCache().store(split, PRE)
    store.fill()
    torch.manual_seed(3)
    cached = _tensors(ImageDataset(split, transform, cache=store))
    torch.manual_seed(3)
    plain = _tensors(ImageDataset(split, transform))
    assert all(torch.equal(a, b) for a, b in zip(cached, plain))
    torch.manual_seed(4)
    assert not torch.equal(_tensors(ImageDataset(split, transform, cache=store))[0], cached[0])


def test_epochs_after_the_first_read_no_file(split: Split, tmp_path: Path) -> None:
    dataset = ImageDataset(split, build_image_transform(PRE), cache=DecodedCache().store(split, PRE))
    first = _tensors(dataset)
    for item in split.items:
        if isinstance(item, str):
            os.remove(item)
    again = _tensors(dataset)  # a decode would fail: the files are gone
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_memory_never_exceeds_the_budget_and_the_rest_spills(split: Split, tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    limit_mb = 3 * 40 * 72 * 3 / 2**20  # about two and a half of the resized images
    cache = DecodedCache(limit_mb=limit_mb, spill_dir=spill)
    transform = build_image_transform(PRE)
    half = len(split) // 2
    parts = [Split(split.items[:half], split.labels[:half]), Split(split.items[half:], split.labels[half:])]
    stores = [cache.store(part, PRE) for part in parts]  # two splits share one budget
    for part, store in zip(parts, stores):
        plain = ImageDataset(part, transform)
        for i in range(len(part)):
            assert torch.equal(ImageDataset(part, transform, cache=store)[i][0], plain[i][0])
            assert cache.in_memory_bytes <= cache.limit_bytes
    total = sum(store.get(i).nbytes for store in stores for i in range(len(store)))
    assert cache.in_memory_bytes + cache.spilled_bytes == total
    assert cache.spilled_bytes > 0 and cache.in_memory_bytes > 0.5 * cache.limit_bytes
    assert spill.is_dir() and list(spill.iterdir()) == []  # the spill file was unlinked at once
    images = [store.get(i) for store in stores for i in range(len(store))]
    # RAM copies own their bytes; spilled images are views of the file's mapping
    assert sum(a.nbytes for a in images if a.flags.owndata) == cache.in_memory_bytes
    cache.close()


def test_a_zero_budget_spills_everything(split: Split, tmp_path: Path) -> None:
    cache = DecodedCache(limit_mb=0, spill_dir=tmp_path)
    store = cache.store(split, PRE)
    assert store.fill() == len(split) and store.fill() == 0
    assert cache.in_memory_bytes == 0 and cache.spilled_bytes == sum(
        store.get(i).nbytes for i in range(len(split)))


def test_fill_in_workers_then_workers_read_the_cache(split: Split) -> None:
    transform = build_image_transform(PRE)
    store = DecodedCache().store(split, PRE)
    assert store.fill(num_workers=2) == len(split)
    assert store.missing() == [] and store.decodes == 0  # the workers decoded, this process keeps
    loader = torch.utils.data.DataLoader(ImageDataset(split, transform, cache=store), batch_size=None,
                                         num_workers=2, multiprocessing_context="fork")
    for (got, _), want in zip(loader, _tensors(ImageDataset(split, transform))):
        assert torch.equal(got, want)


def test_a_worker_decodes_without_storing(split: Split, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DecodedCache().store(split, PRE)
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: object())
    store.get(0)
    assert store.missing() == list(range(len(split)))  # a worker's copy would be lost with it


def test_stores_are_shared_per_split_and_resize(split: Split) -> None:
    cache = DecodedCache()
    assert cache.store(split, PRE) is cache.store(split, PRE)
    assert cache.store(split, PRE.at_size(16)) is not cache.store(split, PRE)
    other = Split(list(split.items), list(split.labels))
    assert cache.store(other, PRE) is not cache.store(split, PRE)


def test_a_pickled_store_is_empty(split: Split) -> None:
    store = DecodedCache().store(split, PRE)
    store.fill()
    copy = pickle.loads(pickle.dumps(store))  # what a spawned worker gets
    assert copy.missing() == list(range(len(split)))
    assert np.array_equal(copy.get(1), store.get(1))


def test_mismatched_cache_is_refused(split: Split) -> None:
    store = DecodedImages(split.items[:2], image_resize(PRE))
    with pytest.raises(ConfigError, match="decoded-image cache of 2 images"):
        ImageDataset(split, build_image_transform(PRE), cache=store)
    with pytest.raises(ConfigError, match="budget"):
        DecodedCache(limit_mb=-1)


class _TwoRanks:
    """Rank ``rank`` of two, in one process: ``all_gather_object`` has the other rank's store
    decode its share of the chunk (as its process would) and returns both in rank order."""

    world = 2
    enabled = True

    def __init__(self, rank: int, other: DecodedImages, chunk: int) -> None:
        self.rank, self.other, self.chunk, self.swaps = rank, other, chunk, 0
        self.todo: list[int] = []

    def broadcast_object(self, obj):
        self.todo = list(obj)  # the positions to decode, in order (rank 0's, on every rank)
        return obj

    def all_gather_object(self, mine):
        chunk = self.todo[self.swaps * self.chunk : (self.swaps + 1) * self.chunk]
        self.swaps += 1
        theirs = list(self.other.decode_each(chunk[1 - self.rank :: 2]))
        return [mine, theirs] if self.rank == 0 else [theirs, mine]


def test_ranks_share_the_decoding_of_a_split(split: Split, monkeypatch) -> None:
    """With two ranks each decodes every other image and keeps all of them, identical to
    decoding alone: the split is decoded once over the ranks, not once per rank."""
    from transferkit.train import loaders

    monkeypatch.setattr(loaders, "SWAP_CHUNK", 4)  # 7 images: chunks of 4 and 3
    alone = DecodedCache(limit_mb=16).store(split, PRE)
    alone.fill()
    rank0, rank1 = DecodedCache(limit_mb=16).store(split, PRE), DecodedCache(limit_mb=16).store(split, PRE)
    decoded = loaders.fill_across_ranks(rank0, _TwoRanks(0, rank1, 4))
    assert decoded == rank0.decodes == 4 and rank1.decodes == 3  # positions 0, 2, 4, 6 and 1, 3, 5
    assert rank0.missing() == []
    for i in range(len(split)):
        np.testing.assert_array_equal(rank0.get(i), alone.get(i))
    assert rank0.decodes == 4  # every later read comes from the cache
