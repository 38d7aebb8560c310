"""`transferkit denoiser train`: tiny runs of each strategy (5 steps, 32-pixel patches, a few 40x40
generated images), the saved weights, and bad input (exit 2, one line, no folder written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, run_cli
from PIL import Image

from transferkit.errors import RunFolderError
from transferkit.restore import drunet, is_denoiser_run, load_denoiser_run
from transferkit.restore.denoiser_train import STAGES, DenoiserTrainConfig, _trainable

TINY = ("--steps", "5", "--patch", "32", "--batch-size", "4")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Three grey 40x40 images (gradients with a bar) and one colour one, in a sub-folder too."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(3):
        a = np.tile(np.linspace(0, 255, 40), (40, 1)).astype(np.uint8)
        a[8:32, 8 + 4 * i:16 + 4 * i] = 255 - a[8:32, 8 + 4 * i:16 + 4 * i]
        Image.fromarray(a).save(root / f"grey{i}.png")
    (root / "colour").mkdir()
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / "colour" / "c.jpg")
    return root


def builtin_state() -> dict[str, torch.Tensor]:
    return drunet.load_builtin().state_dict()


@pytest.mark.parametrize("options", [("--strategy", "full"), ("--strategy", "lora", "--lora-rank", "2"),
                                     ("--strategy", "last-n", "--last-n", "2"), ("--from", "none")],
                         ids=["full", "lora", "last-n", "scratch"])
def test_each_strategy_writes_a_run_that_loads(capsys, tmp_path, images, options):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "denoiser", "train", "--images", images, "--out", out, *TINY, *options)
    assert code == 0, err
    assert str(out) in stdout and "->" in stdout and stdout.count("\n") == 1
    assert "step 5/5" in err
    assert sorted(p.name for p in out.iterdir()) == ["denoiser.json", "denoiser.safetensors", "metrics.jsonl",
                                                     "train.log"]
    record = json.loads((out / "denoiser.json").read_text())
    assert record["kind"] == "denoiser" and record["record"]["images"] == 4 and record["record"]["steps"] == 5
    assert set(record["record"]["psnr_after"]) == {"15", "25", "50"}
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5] and all("l1" in line for line in lines)
    assert is_denoiser_run(out)
    model = load_denoiser_run(out)
    assert not model.training
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32), 0.1).shape == (1, 3, 32, 32)


def test_lora_weights_are_merged_and_upsamplers_frozen(capsys, tmp_path, images):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "denoiser", "train", "--images", images, "--out", out, *TINY, "--strategy", "lora",
                           "--lr", "1e-2")
    assert code == 0, err
    from safetensors.torch import load_file

    saved, base = load_file(str(out / "denoiser.safetensors")), builtin_state()
    assert set(saved) == set(base)  # plain DRUNet keys: no lora_A / lora_B
    drunet.drunet_from_state_dict(saved, "run")
    assert torch.equal(saved["m_up1.0.weight"], base["m_up1.0.weight"])  # ConvTranspose2d: frozen
    assert not torch.equal(saved["m_head.weight"], base["m_head.weight"])  # a convolution got its update


def test_merged_lora_state_dict_gives_the_adapted_models_outputs(images):
    from transferkit.lora import merged_state_dict

    model = drunet.load_builtin()
    _trainable(model, DenoiserTrainConfig(images=images, strategy="lora", lora_rank=2))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(0, 0.02)
    merged = drunet.drunet_from_state_dict(merged_state_dict(model), "merged")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected, got = model.eval()(x, 0.1), merged(x, 0.1)
    assert not torch.allclose(expected, drunet.load_builtin()(x, 0.1), atol=1e-4)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_last_n_changes_only_the_last_stages(capsys, tmp_path, images):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "denoiser", "train", "--images", images, "--out", out, *TINY,
                           "--strategy", "last-n", "--last-n", "2", "--lr", "1e-2")
    assert code == 0, err
    saved, base = load_denoiser_run(out).state_dict(), builtin_state()
    for key in base:
        stage = key.split(".")[0]
        if stage in STAGES[-2:]:
            continue
        assert torch.equal(saved[key], base[key]), key
    assert not torch.equal(saved["m_tail.weight"], base["m_tail.weight"])
    record = json.loads((out / "denoiser.json").read_text())["record"]
    assert record["trainable_params"] == sum(base[k].numel() for k in base if k.split(".")[0] in STAGES[-2:])


def write_small(folder: Path) -> None:
    folder.mkdir()
    Image.fromarray(np.zeros((6, 6), np.uint8)).save(folder / "tiny.png")


def write_unreadable(folder: Path) -> None:
    folder.mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(folder / "ok.png")
    (folder / "broken.png").write_bytes(b"not a png at all")


def write_other_architecture(path: Path) -> None:
    torch.save(torch.nn.Conv2d(3, 8, 3).state_dict(), path)


@pytest.mark.parametrize("case, options, fragments", [
    ("missing folder", ("--images", "{tmp}/nowhere"), ("nowhere", "not a folder")),
    ("no images", ("--images", "{tmp}/empty"), ("no image files",)),
    ("unreadable image", ("--images", "{tmp}/bad"), ("broken.png", "cannot be read")),
    ("too small", ("--images", "{tmp}/small"), ("tiny.png", "8x8")),
    ("zero steps", ("--steps", "0"), ("steps",)),
    ("unknown strategy", ("--strategy", "dora"), ("strategy", "dora")),
    ("other architecture", ("--from", "{tmp}/other.pth"), ("other.pth", "DRUNet")),
    ("missing start", ("--from", "{tmp}/none.safetensors"), ("none.safetensors",)),
    ("lora from scratch", ("--from", "none", "--strategy", "lora"), ("--strategy full",)),
    ("odd patch", ("--patch", "30"), ("patch", "multiple of 8")),
], ids=lambda v: v if isinstance(v, str) and " " in v else None)
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, images, case, options, fragments):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    write_small(tmp_path / "small")
    write_unreadable(tmp_path / "bad")
    write_other_architecture(tmp_path / "other.pth")
    out = tmp_path / "run"
    args = ["denoiser", "train", "--images", str(images), "--out", str(out), *TINY]
    args += [o.format(tmp=tmp_path) for o in options]  # a later --images/--steps wins in click
    code, _, err = run_cli(capsys, *args)
    assert_clean_error(code, err, *fragments)
    assert not out.exists()


def test_a_folder_with_something_in_it_is_not_overwritten(capsys, tmp_path, images):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run_cli(capsys, "denoiser", "train", "--images", images, "--out", out, *TINY)
    assert_clean_error(code, err, "not empty")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_damaged_runs_are_run_folder_errors(capsys, tmp_path, images):
    out = tmp_path / "run"
    assert run_cli(capsys, "denoiser", "train", "--images", images, "--out", out, *TINY)[0] == 0
    weights = out / "denoiser.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(RunFolderError, match="damaged"):
        load_denoiser_run(out)
    weights.unlink()
    with pytest.raises(RunFolderError, match="denoiser.safetensors missing"):
        load_denoiser_run(out)
    assert not is_denoiser_run(tmp_path) and not is_denoiser_run(tmp_path / "nowhere")


def test_without_out_the_run_gets_a_default_folder(capsys, tmp_path, images, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run_cli(capsys, "denoiser", "train", "--images", images, *TINY, "--strategy", "lora")
    assert code == 0, err
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.startswith("denoiser-drunet-lora-") and str(folder.relative_to(tmp_path)) in stdout
    assert is_denoiser_run(folder)


def test_a_training_run_holds_the_running_lock_and_a_failure_is_recorded(tmp_path, images):
    """While it trains the run holds the lock on train.log (the dashboard shows it running); a run
    ended by an error leaves failure.json with that error (shown as failed), and its log so far."""
    from transferkit.errors import TrainingDivergedError
    from transferkit.io import runfolder
    from transferkit.restore import train_denoiser

    seen = []
    train_denoiser(DenoiserTrainConfig(images=images, out=tmp_path / "ok", steps=4, patch=32, batch_size=2),
                   progress=lambda record: seen.append(runfolder.is_running(tmp_path / "ok")))
    assert seen and all(seen) and not runfolder.is_running(tmp_path / "ok")
    assert not (tmp_path / "ok" / "failure.json").exists()
    assert "wrote" in (tmp_path / "ok" / "train.log").read_text().splitlines()[-1]

    def diverge(record):
        raise TrainingDivergedError("The training loss became nan at step 2; lower --lr.")

    with pytest.raises(TrainingDivergedError):
        train_denoiser(DenoiserTrainConfig(images=images, out=tmp_path / "bad", steps=4, patch=32, batch_size=2),
                       progress=diverge)
    failure = json.loads((tmp_path / "bad" / "failure.json").read_text())
    assert failure == {"error": "The training loss became nan at step 2; lower --lr.", "type": "TrainingDivergedError"}
    assert not runfolder.is_running(tmp_path / "bad") and not (tmp_path / "bad" / "denoiser.json").exists()
    assert (tmp_path / "bad" / "train.log").read_text().startswith("denoiser train:")
