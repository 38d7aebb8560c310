"""Fixtures for model tests: offline, isolated caches, a tiny BERT folder, a model table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

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
