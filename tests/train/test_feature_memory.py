"""Bounded memory for cached features: one budget for every split, spill files on the run
folder's disk (or --cache-dir) and gone at the end, solvers that read memory-mapped features a
slice at a time and give the in-memory results."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from torch import nn

import transferkit as tk
from transferkit.data.decoded import ram_backed
from transferkit.train.features import (
    CachedFeatures,
    FeatureCache,
    FeatureRows,
    extract_features,
)
from transferkit.train.head import _lbfgs, _mean_std, _standardizer, evaluate_head
from transferkit.train.head_select import AdamWHead, select_and_fit_head
from transferkit.train.loop import LoopSettings

features_module = importlib.import_module("transferkit.train.features")
MB = 2**20


class _Doubler(nn.Module):
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def _encode(cache: FeatureCache, rows: int, dim: int = 256) -> CachedFeatures:
    x = torch.arange(float(rows * dim)).reshape(rows, dim)
    batches = [(x[i], torch.zeros(len(i), dtype=torch.long), i) for i in torch.arange(rows).split(64)]
    cached = extract_features(_Doubler(), batches, rows, torch.device("cpu"), cache=cache)
    assert torch.equal(cached.features, x * 2)  # a spilled matrix reads back what was written
    return cached


def _blobs(n: int, dim: int = 12, classes: int = 3, seed: int = 0) -> CachedFeatures:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centres = 2.0 * torch.randn(classes, dim, generator=torch.Generator().manual_seed(7))
    return CachedFeatures(centres[labels] + 1.5 * torch.randn(n, dim, generator=g) + 3.0, labels)


def _on_disk(data: CachedFeatures, folder: Path) -> CachedFeatures:
    """The same rows memory-mapped from a spill file in ``folder``."""
    buffer, path = FeatureCache(0, folder).allocate(len(data), data.dim)
    buffer.copy_(data.features)
    return CachedFeatures(buffer, data.labels, True, path)


def _spills_recorded(monkeypatch) -> list[tuple[Path, bool]]:
    """Record every spill file the feature cache makes: (path, whether it still exists)."""
    seen: list[tuple[Path, bool]] = []
    allocate = FeatureCache.allocate

    def recording(self, n: int, dim: int):
        buffer, path = allocate(self, n, dim)
        if path is not None:
            seen.append((path, path.exists()))
        return buffer, path

    monkeypatch.setattr(FeatureCache, "allocate", recording)
    return seen


# -- one budget for all splits -------------------------------------------------------------------
def test_one_budget_covers_train_val_and_test_together(tmp_path) -> None:
    # 256 x 256 float32 = 0.25 MB per split: each fits a 0.6 MB budget alone, all three do not.
    cache = FeatureCache(limit_mb=0.6, spill_dir=tmp_path)
    train, val, test = (_encode(cache, 256) for _ in range(3))
    assert (train.on_disk, val.on_disk, test.on_disk) == (False, False, True)
    assert cache.in_memory_bytes == 2 * 256 * 256 * 4 <= 0.6 * MB
    assert test.spill_path is not None and test.spill_path.parent == tmp_path
    assert cache.spilled == [test.spill_path]


def test_spill_file_is_in_the_named_folder_mapped_and_already_unlinked(tmp_path) -> None:
    cached = _encode(FeatureCache(0, tmp_path / "cache"), 100)
    path = cached.spill_path
    assert cached.on_disk and path.parent == tmp_path / "cache" and path.name.startswith(".features-")
    assert not path.exists() and list((tmp_path / "cache").iterdir()) == []  # nothing to clean up, ever
    maps = Path("/proc/self/maps")
    if maps.exists():  # the data lives in the (deleted) file on that disk, not in anonymous memory
        assert f"{path} (deleted)" in maps.read_text()


def test_a_spill_that_does_not_fit_is_one_paragraph_naming_the_folder(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(tk.ConfigError, match="--cache-dir") as err:
        FeatureCache(0, blocker / "sub").allocate(10, 10)
    assert str(blocker / "sub") in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(not ram_backed(Path("/dev/shm")), reason="no RAM-backed /dev/shm on this machine")
def test_default_spill_folder_is_never_ram_backed(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(features_module.tempfile, "tempdir", "/dev/shm")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert features_module.default_spill_dir() == tmp_path / "transferkit"
    cached = _encode(FeatureCache(0), 10)
    assert cached.spill_path.parent == tmp_path / "transferkit" and not ram_backed(cached.spill_path.parent)


def test_train_spills_to_the_run_folder_and_leaves_nothing(tiny_bert_dir, sentiment_csv, tmp_path,
                                                          monkeypatch) -> None:
    spills = _spills_recorded(monkeypatch)
    out = tmp_path / "run"
    result = tk.train(tk.TrainConfig(model=f"hf:{tiny_bert_dir}", data=str(sentiment_csv), out=str(out),
                                     strategy="feature-extraction", feature_cache_mb=0, device="cpu"),
                      progress=False)
    assert [p.parent for p, _ in spills] == [out] * 3  # train, val and test, all on the run's disk
    assert not any(existed for _, existed in spills)
    assert not list(out.glob(".*")) and result.metrics.n > 0
    assert f"spills to {out}" in (out / "train.log").read_text()


def test_cli_cache_dir_chooses_the_spill_folder(tiny_bert_dir, sentiment_csv, tmp_path, capsys,
                                                monkeypatch) -> None:
    spills = _spills_recorded(monkeypatch)
    cache_dir = tmp_path / "scratch"
    code, _, err = run_cli(capsys, "train", "--model", f"hf:{tiny_bert_dir}", "--data", sentiment_csv,
                           "--strategy", "linear-probe", "--feature-cache-mb", 0, "--cache-dir", cache_dir,
                           "--out", tmp_path / "run", "--device", "cpu")
    assert code == 0, err
    assert {p.parent for p, _ in spills} == {cache_dir} and len(spills) == 3
    assert list(cache_dir.iterdir()) == []
    assert tk.TrainConfig.load(tmp_path / "run" / "config.yaml").cache_dir == str(cache_dir)


# -- solvers read slices and give the in-memory results ------------------------------------------
def test_chunked_statistics_match_the_full_matrix() -> None:
    data = _blobs(300, dim=20)
    mean, std = _mean_std(data, rows=7)
    assert torch.allclose(mean, data.features.mean(0), atol=1e-5)
    assert torch.allclose(std, data.features.std(0), atol=1e-5)


def test_chunked_lbfgs_minimises_the_same_objective_as_the_full_batch() -> None:
    data = _blobs(300)
    heads = []
    for rows in (None, 7):  # one slice (the full batch), then 43 slices
        head = _standardizer(data, 3, seed=0, rows=rows)
        with torch.enable_grad():
            _lbfgs(head, data, l2=0.01, rows=rows)
        heads.append(head.folded())
    assert torch.allclose(heads[0].weight, heads[1].weight, atol=1e-3)
    assert torch.allclose(heads[0].bias, heads[1].bias, atol=1e-3)
    assert evaluate_head(heads[0], data)[1] == evaluate_head(heads[1], data, rows=5)[1]


@pytest.mark.parametrize("val_size", [15, 90])  # k-fold CV on a tiny split; selection on val then refit
def test_head_selection_on_memory_mapped_slices_matches_the_in_memory_head(val_size, tmp_path,
                                                                           monkeypatch) -> None:
    train, val = _blobs(120, seed=1), _blobs(val_size, seed=2)
    opts = AdamWHead(LoopSettings(epochs=3, weight_decay=0.0), 1e-2, 16, torch.Generator().manual_seed(0))
    in_memory, _ = select_and_fit_head(train, val, 3, "lbfgs", adamw=opts)
    monkeypatch.setattr(features_module, "CHUNK_MB", 16 * 12 * 4 / MB)  # 16-row slices
    mapped, _ = select_and_fit_head(_on_disk(train, tmp_path), _on_disk(val, tmp_path), 3, "lbfgs", adamw=opts)
    assert mapped.chosen == in_memory.chosen and mapped.selection == in_memory.selection
    assert mapped.score == pytest.approx(in_memory.score, abs=1e-6)
    assert torch.allclose(mapped.head.weight, in_memory.head.weight, atol=2e-3)


def test_feature_rows_pool_train_and_val_without_copying() -> None:
    train, val = _blobs(10), _blobs(5, seed=3)
    pool = FeatureRows([train, val])
    fold = pool.take(torch.tensor([12, 3, 14]))
    assert torch.equal(fold.gather(torch.arange(3)), torch.stack([val.features[2], train.features[3], val.features[4]]))
    assert fold.labels.tolist() == [val.labels[2].item(), train.labels[3].item(), val.labels[4].item()]
    assert pool.parts[0].features is train.features  # the view holds the matrices themselves
    assert torch.equal(torch.cat([x for x, _ in pool.chunks(4)]), torch.cat([train.features, val.features]))


def test_adamw_head_on_views_matches_the_head_on_tensors() -> None:
    train, val = _blobs(60, seed=1), _blobs(12, seed=2)
    runs = []
    for t, v in ((train, val), (FeatureRows([train]), FeatureRows([val]))):
        opts = AdamWHead(LoopSettings(epochs=3, weight_decay=0.0), 1e-2, 16, torch.Generator().manual_seed(0))
        torch.manual_seed(0)  # the AdamW head's initialisation draws from the process's stream
        runs.append(select_and_fit_head(t, v, 3, "adamw", adamw=opts)[0].head)
    assert torch.equal(runs[0].weight, runs[1].weight)


PEAK_SCRIPT = """
import importlib, sys
from pathlib import Path
import numpy as np, torch
import transferkit
features = importlib.import_module("transferkit.train.features")
head = importlib.import_module("transferkit.train.head")
features.CHUNK_MB = 1.0

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

folder, n, dim = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
labels = torch.arange(n) % 3
parts = []
for name, rows in (("train.f32", n), ("val.f32", n // 4)):
    array = np.memmap(folder / name, dtype=np.float32, mode="r", shape=(rows, dim))
    parts.append(features.CachedFeatures(torch.from_numpy(array), labels[:rows], True))
pool = features.FeatureRows(parts)  # train + val, as the refit sees them

def fit(pool, train, val):
    with head.one_thread():
        solved = head._standardizer(pool, 3, seed=0)
        with torch.enable_grad():
            head._lbfgs(solved, pool, l2=1.0, max_iter=8)
        head.fit_head_lbfgs(train, val, 3, grid=(1.0,))
        return head.evaluate_head(solved, pool)[1]

small = [features.CachedFeatures(p.features[:3000].clone(), p.labels[:3000]) for p in parts]
fit(features.FeatureRows(small), *small)  # warm up: the libraries' code pages are resident now
del small
for repetition in range(3):  # one line each: peak growth, mapped-file growth, accuracy
    Path("/proc/self/clear_refs").write_text("5")
    before, files_before = status("VmHWM"), status("RssFile") + status("RssShmem")
    accuracy = fit(pool, *parts)
    print(status("VmHWM") - before, status("RssFile") + status("RssShmem") - files_before, accuracy)
"""


def test_fitting_on_a_memory_mapped_file_does_not_copy_it_into_ram(tmp_path) -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure the peak resident memory")
    n, dim = 49152, 256  # 48 MB of training features + 12 MB of validation, read in 1 MB slices
    rng = np.random.default_rng(0)
    for name, rows in (("train.f32", n), ("val.f32", n // 4)):
        array = np.memmap(tmp_path / name, np.float32, "w+", shape=(rows, dim))
        for start in range(0, rows, 8192):
            block = rng.standard_normal((min(8192, rows - start), dim), dtype=np.float32)
            block[:, 0] += 2.0 * (np.arange(start, start + len(block)) % 3)
            array[start : start + len(block)] = block
        array.flush()
        del array
    data_mb = (n + n // 4) * dim * 4 / MB
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(PEAK_SCRIPT), str(tmp_path), str(n), str(dim)],
                         check=False, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    fits = [tuple(map(float, line.split())) for line in out.stdout.splitlines()]
    peak_mb, mapped_mb, accuracy = fits[0]
    # The mapped file's own pages count as resident once read (at most data_mb); a solver that
    # materialised the matrix, or its standardised copy, would add at least data_mb more.
    assert peak_mb < data_mb + 0.35 * data_mb, (peak_mb, mapped_mb, data_mb)
    # Memory of its own (peak minus mapped pages), the least of three fits: a copy of the matrix
    # shows in every fit, while the allocator's transient peaks vary (4-11 MB alone, 23 MB once
    # inside a CI run, against 60 MB of data).
    own_mb = min(peak - mapped for peak, mapped, _ in fits)
    assert own_mb < 0.25 * data_mb, (fits, data_mb)
    assert all(fit[2] > 0.5 for fit in fits)  # it did fit: the first feature separates the classes


def test_a_cache_dir_that_is_a_file_fails_before_the_run_folder_exists(tmp_path, capsys) -> None:
    from conftest import assert_clean_error

    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli(capsys, "train", "--model", "hf:unused", "--data", tmp_path / "none.csv",
                           "--cache-dir", tmp_path / "afile" / "sub", "--out", tmp_path / "run")
    assert_clean_error(code, err, "cache_dir", "is a file, not a folder", "--cache-dir")
    assert not (tmp_path / "run").exists()
