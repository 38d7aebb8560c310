"""Priors: official-format DRUNet weights (.pth and .safetensors) load, grey and colour models work
on either kind of image, foreign and unsafe files are refused, padding and tiling keep results, and
the classical priors denoise."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from transferkit.errors import WeightsMismatchError, WeightsUnavailableError
from transferkit.restore import drunet, priors
from transferkit.restore.priors import drunet_prior, load_prior

OFFICIAL_WIDTHS = (64, 128, 256, 512)
# The first official keys in order, as in drunet_gray.pth / drunet_color.pth (KAIR's UNetRes).
OFFICIAL_FIRST_KEYS = ["m_head.weight", "m_down1.0.res.0.weight", "m_down1.0.res.2.weight", "m_down1.1.res.0.weight"]


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> dict[str, dict]:
    """The official architectures (deepinv DRUNet, nc=(64,128,256,512), nb=4), random weights, saved
    as .pth (torch.save of the state_dict, as the official files are) and as .safetensors."""
    from deepinv.models import DRUNet
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("official")
    files = {}
    for name, channels in (("gray", 1), ("color", 3)):
        torch.manual_seed(channels)
        model = DRUNet(in_channels=channels, out_channels=channels, nc=OFFICIAL_WIDTHS, nb=4, pretrained=None).eval()
        state = model.state_dict()
        torch.save(state, root / f"drunet_{name}.pth")
        save_file({k: v.contiguous() for k, v in state.items()}, str(root / f"drunet_{name}.safetensors"))
        files[name] = {"model": model, "state": state, "channels": channels,
                       "pth": root / f"drunet_{name}.pth", "safetensors": root / f"drunet_{name}.safetensors"}
    return files


def tiny_drunet(channels: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return drunet.DrunetShape(channels, (8, 16, 32, 64), 2).build().eval()


def crop(name: str, size: int = 64) -> torch.Tensor:
    """A [1, C, size, size] crop of a scikit-image sample in [0, 1]."""
    import skimage.data

    array = getattr(skimage.data, name)()[100:100 + size, 180:180 + size].astype(np.float32) / 255.0
    tensor = torch.from_numpy(array)
    return (tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1))[None].contiguous()


@pytest.mark.parametrize("name", ["gray", "color"])
@pytest.mark.parametrize("suffix", ["pth", "safetensors"])
def test_official_state_dicts_load(official, name, suffix):
    entry = official[name]
    assert list(entry["state"])[:4] == OFFICIAL_FIRST_KEYS and list(entry["state"])[-1] == "m_tail.weight"
    prior = load_prior(str(entry[suffix]))
    assert prior.kind == "drunet" and prior.name == str(entry[suffix])
    assert drunet.shape_of(prior.network.state_dict(), "x") == drunet.DrunetShape(entry["channels"], OFFICIAL_WIDTHS, 4)
    for key, value in entry["state"].items():
        assert torch.equal(prior.network.state_dict()[key], value), key
    image = torch.rand(1, entry["channels"], 24, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = bordered(entry["model"], image, 0.1)
    torch.testing.assert_close(prior(image, 0.1), expected, atol=1e-6, rtol=0)


def test_wrapped_and_prefixed_state_dicts_load(tmp_path):
    """{"params": ...} (KAIR's training files) and a DataParallel "module." prefix are unwrapped."""
    state = tiny_drunet().state_dict()
    torch.save({"params": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.pth")
    prior = load_prior(str(tmp_path / "wrapped.pth"))
    assert set(prior.network.state_dict()) == set(state)


def bordered(model: nn.Module, image: torch.Tensor, sigma: float) -> torch.Tensor:
    """The network on the image reflect-padded by priors.BORDER on every side, cropped back (the
    prior's own padding; the sides used here are multiples of 8 once padded)."""
    border = priors.BORDER
    padded = torch.nn.functional.pad(image, (border,) * 4, mode="reflect")
    return model(padded, sigma)[..., border:-border, border:-border]


def test_grey_official_model_denoises_colour_channel_by_channel(official):
    prior = load_prior(str(official["gray"]["pth"]))
    image = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    out = prior(image, 0.1)
    assert out.shape == image.shape
    with torch.no_grad():
        for channel in range(3):
            expected = bordered(official["gray"]["model"], image[:, channel:channel + 1], 0.1)
            torch.testing.assert_close(out[:, channel:channel + 1], expected, atol=1e-6, rtol=0)


def test_colour_builtin_denoises_grey_images():
    prior = load_prior("builtin:drunet")
    assert prior.network.m_tail.weight.shape[0] == 3
    grey = crop("camera", 40)
    out = prior(grey, 25 / 255)
    assert out.shape == grey.shape == (1, 1, 40, 40)
    with torch.no_grad():  # three equal channels in, their mean out
        expected = bordered(prior.network, grey.expand(-1, 3, -1, -1), 25 / 255).mean(1, keepdim=True)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def _mismatch_cases(tmp_path):
    import torchvision

    state = tiny_drunet().state_dict()
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet18.pth")
    torch.save({k: v for k, v in state.items() if k != "m_down2.0.res.0.weight"}, tmp_path / "missing-key.pth")
    wrong = dict(state)
    wrong["m_down1.1.res.2.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save(wrong, tmp_path / "wrong-shape.pth")
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra-key.pth")
    torch.save([torch.zeros(2)], tmp_path / "a-list.pth")
    (tmp_path / "text.pth").write_text("not weights\n")
    (tmp_path / "text.safetensors").write_text("not weights\n")
    return {"resnet18.pth": "not a DRUNet state_dict", "missing-key.pth": "m_down2.0.res.0.weight",
            "wrong-shape.pth": "shape differs for m_down1.1.res.2.weight", "extra-key.pth": "unexpected extra.weight",
            "a-list.pth": "list", "text.pth": "Cannot read", "text.safetensors": "Cannot read"}


# Without m_down2.0.res.0.weight, shape_of reads a width of 0 and builds a zero-width model before
# the key comparison reports the missing key: torch warns about zero-element tensors on the way.
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_files_of_another_architecture_are_one_paragraph_errors(tmp_path):
    for file_name, fragment in _mismatch_cases(tmp_path).items():
        with pytest.raises(WeightsMismatchError) as caught:
            load_prior(str(tmp_path / file_name))
        message = str(caught.value)
        assert fragment in message, (file_name, message)
        assert "\n" not in message and file_name in message and "Traceback" not in message


CALLS: list[str] = []


def _record(note: str) -> list[str]:
    CALLS.append(note)
    return CALLS


class _Payload:
    """Unpickling this runs code: ``_record("unpickled")``."""

    def __reduce__(self):
        return (_record, ("unpickled",))


@pytest.mark.parametrize("payload", [lambda: _Payload(), lambda: {"m_head.weight": torch.zeros(1), "x": _Payload()}],
                         ids=["object", "dict-with-object"])
def test_pickles_with_code_are_refused(tmp_path, payload):
    path = tmp_path / "evil.pth"
    torch.save(payload(), path)
    CALLS.clear()
    with pytest.raises(WeightsMismatchError, match="Cannot read") as caught:
        load_prior(str(path))
    assert CALLS == []  # weights_only=True: the reducer never ran
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(37, 53), (8, 9), (33, 64), (64, 64)])
def test_padding_to_a_multiple_of_8_keeps_the_size(channels, size):
    prior = drunet_prior(tiny_drunet(channels), "tiny")
    image = torch.rand(1, channels, *size, generator=torch.Generator().manual_seed(0))
    out = prior(image, 0.1)
    assert out.shape == image.shape and out.dtype == image.dtype and torch.isfinite(out).all()


class _Local(nn.Module):
    """A 3x3 convolution: each output pixel sees one pixel of context, so tiles with any context
    of at least one pixel must reproduce the whole-image result exactly."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.m_tail = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, sigma):
        return self.m_tail(x) + sigma


def test_tiles_cover_the_image_exactly(monkeypatch):
    """Small tiles (24 px, 4 px of context) on a 70x61 image: every pixel written once, from the
    right place (tiles ending at the image border are reflect-padded like the whole image)."""
    monkeypatch.setattr(priors, "_TILE", 24)
    monkeypatch.setattr(priors, "_OVERLAP", 4)
    network = _Local().eval()
    image = torch.rand(1, 1, 70, 61, generator=torch.Generator().manual_seed(0))
    assert 70 * 61 > (2 * 24) ** 2  # tiled
    with torch.no_grad():
        tiled = priors._tiled(network, image, 0.1)
        whole = priors._padded(network, image, 0.1)
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=0)


def test_large_images_are_tiled_with_the_untiled_result():
    """1100x1030 (above 1024x1024 pixels: 3 tiles of 512 px by 3) with a tiny random DRUNet. The
    network's receptive field is larger than the 32 px of context a tile keeps, but the influence
    of pixels farther than 32 px is small: measured max |tiled - untiled| = 5.6e-9 against an output
    standard deviation of 7.0e-3 (8e-7 of it, float32 rounding level). The bound, 1e-4 of the
    output's standard deviation, leaves two orders of magnitude and still catches a misplaced tile
    (which would differ by about the output's own spread)."""
    network = tiny_drunet(1)
    image = torch.rand(1, 1, 1100, 1030, generator=torch.Generator().manual_seed(0))
    assert 1100 * 1030 > (2 * priors._TILE) ** 2 and priors._OVERLAP == 32
    with torch.no_grad():
        tiled = priors._tiled(network, image, 0.1)
        whole = priors._padded(network, image, 0.1)
    assert tiled.shape == image.shape
    difference = float((tiled - whole).abs().max())
    assert difference < 1e-4 * float(whole.std()), (difference, float(whole.std()))


@pytest.mark.parametrize("name", ["tv", "wavelet", "nlm"])
@pytest.mark.parametrize("image", ["camera", "astronaut"])
def test_classical_priors_reduce_the_error_of_a_noisy_image(name, image):
    clean = crop(image)
    sigma = 25 / 255
    noisy = clean + sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    prior = load_prior(name)
    assert prior.kind == "classical" and prior.name == name
    out = prior(noisy, sigma)
    assert out.shape == clean.shape and out.dtype == clean.dtype
    before, after = float(((noisy - clean) ** 2).mean()), float(((out - clean) ** 2).mean())
    assert after < 0.7 * before, (name, image, before, after)


@pytest.mark.skipif(importlib.util.find_spec("bm3d") is not None, reason="bm3d is installed")
def test_bm3d_without_its_package_says_how_to_install_it():
    with pytest.raises(WeightsUnavailableError, match="pip install bm3d"):
        load_prior("bm3d")


def test_unknown_prior_names_the_choices(tmp_path):
    from transferkit.errors import ConfigError

    with pytest.raises(ConfigError, match="builtin:drunet") as caught:
        load_prior(str(tmp_path / "missing.pth"))
    assert "\n" not in str(caught.value)
