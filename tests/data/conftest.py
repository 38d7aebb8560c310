"""Helpers that build tiny datasets in ``tmp_path`` (nothing is left behind)."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# One colour per class so that images of different classes differ.
_COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]


def write_png(path: Path, colour: tuple[int, int, int] = (128, 128, 128), size: int = 8) -> Path:
    """A small solid-colour PNG (with a little noise, so files differ)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    arr = np.clip(np.array(colour)[None, None, :] + rng.integers(-10, 10, (size, size, 3)), 0, 255)
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


def write_truncated_jpeg(path: Path) -> Path:
    """A JPEG whose header is fine but whose data stops halfway: open() works, load() fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format="JPEG")
    data = buf.getvalue()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_image_folder(root: Path, counts: dict[str, int], ext: str = ".png") -> Path:
    """``root/<class>/<i><ext>`` with ``counts[class]`` images per class."""
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            write_png(root / name / f"{name}_{i:03d}{ext}", _COLOURS[c % len(_COLOURS)])
    return root


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def text_rows(counts: dict[str, int]) -> list[dict]:
    """Rows ``{"text": ..., "label": ...}`` with ``counts[label]`` rows per label."""
    return [
        {"text": f"{label} example number {i}", "label": label}
        for label, n in counts.items()
        for i in range(n)
    ]


@pytest.fixture
def image_folder(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``image_folder({"cat": 10, "dog": 10})`` -> a folder of class folders."""

    def build(counts: dict[str, int], name: str = "imgs", ext: str = ".png") -> Path:
        return make_image_folder(tmp_path / name, counts, ext)

    return build


@pytest.fixture
def helpers() -> object:
    """The builder functions above, for tests (importing conftest directly is fragile)."""
    import types

    return types.SimpleNamespace(
        write_png=write_png,
        write_truncated_jpeg=write_truncated_jpeg,
        make_image_folder=make_image_folder,
        write_jsonl=write_jsonl,
        text_rows=text_rows,
    )


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails, as on a machine without a network."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access in a test of offline data")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
