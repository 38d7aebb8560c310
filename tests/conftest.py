"""Shared fixtures: offline isolation and small datasets written to temporary folders."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Tests never reach a hub: downloads would hang or fail on machines without a network.
os.environ.setdefault("TRANSFERKIT_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

POSITIVE = "good great film very good movie it was great and good".split()
NEGATIVE = "bad terrible film very bad movie it was terrible and bad".split()


def run_cli(capsys, *args: object) -> tuple[int, str, str]:
    """Run the CLI entry point in-process; return (exit status, stdout, stderr)."""
    from transferkit.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code: int, err: str, *fragments: str) -> None:
    """Exit status 2, one paragraph on stderr naming the problem (each fragment), no traceback."""
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("error: ") and err.strip().count("\n") == 0, err
    for fragment in fragments:
        assert fragment.lower() in err.lower(), (fragment, err)


def write_digit_folder(root: Path, classes: tuple[int, ...] = (0, 1, 2), per_class: int = 12,
                       start: int = 0) -> Path:
    """``root/<digit>/<i>.png``: real 8x8 scikit-learn digits scaled to 32x32 grey PNGs."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for c in classes:
        idx = np.flatnonzero(digits.target == c)[start : start + per_class]
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        for i in idx:
            arr = (digits.images[i] * 255 / 16).astype(np.uint8)
            Image.fromarray(arr).resize((32, 32), Image.NEAREST).save(root / str(c) / f"{i}.png")
    return root


def write_truncated_jpeg(path: Path) -> Path:
    """A JPEG cut in half: the header opens, decoding fails."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def write_sentiment_csv(path: Path, per_class: int = 15, seed: int = 0, neg: int | None = None) -> Path:
    """``text,label`` rows built from the tiny BERT vocabulary (positive vs negative words):
    ``per_class`` of each, or ``neg`` negative ones when given (imbalanced data)."""
    rng = np.random.default_rng(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for label, words, n in (("pos", POSITIVE, per_class), ("neg", NEGATIVE, per_class if neg is None else neg)):
            for _ in range(n):
                writer.writerow([" ".join(rng.choice(words, size=8)), label])
    return path


@pytest.fixture(scope="session")
def digit_folder(tmp_path_factory) -> Path:
    return write_digit_folder(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    from helpers.tiny import tiny_bert_folder

    return tiny_bert_folder(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def sentiment_csv(tmp_path_factory) -> Path:
    return write_sentiment_csv(tmp_path_factory.mktemp("text") / "reviews.csv")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny convolutions: they gain nothing from threads, and a
    2-thread torch process next to a busy one runs many times slower on a 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
