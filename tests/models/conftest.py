"""Fixtures for model tests: offline, isolated caches, a tiny BERT folder, a model table."""

from __future__ import annotations

import hashlib
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # make tests/helpers importable whatever the rootdir mode
    sys.path.insert(0, str(TESTS))


@pytest.fixture(autouse=True)
def offline_isolated(monkeypatch, tmp_path):
    """Never download; empty torch hub and HF caches in a temporary folder."""
    from huggingface_hub import constants

    monkeypatch.setenv("TRANSFERKIT_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer BERT folder (config, weights, tokenizer), built once per session."""
    from helpers.tiny import tiny_bert_folder

    return tiny_bert_folder(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture
def online(monkeypatch) -> None:
    """Downloads allowed (no offline variable set); tests still fake or block the network."""
    from transferkit.models.weights import OFFLINE_ENVS

    for name in OFFLINE_ENVS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def torchvision_cache(monkeypatch) -> Callable[..., tuple[Path, bytes]]:
    """``put(weights_enum_member, state, write=True) -> (path, bytes)``: a torch hub cache file
    named like torchvision's (``resnet18-<first 8 hex digits of its SHA-256>.pth``) holding
    ``state``; ``weights_cache_file`` answers that path for the member (the published name's
    hash cannot be matched by a test file)."""
    from transferkit.models import torchvision as tv_source

    published = tv_source.weights_cache_file
    paths: dict[str, Path] = {}
    monkeypatch.setattr(tv_source, "weights_cache_file", lambda w: paths.get(w.url) or published(w))

    def put(weights: Any, state: dict[str, torch.Tensor], write: bool = True) -> tuple[Path, bytes]:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        raw = buffer.getvalue()
        stem = published(weights).name.split("-")[0]
        path = published(weights).parent / f"{stem}-{hashlib.sha256(raw).hexdigest()[:8]}.pth"
        paths[weights.url] = path
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(raw)
        return path, raw

    return put
