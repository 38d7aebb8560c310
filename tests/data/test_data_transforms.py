"""Image transforms, to_pil_rgb, ImageDataset/TextDataset and TextCollator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transferkit.data import (
    ImageDataset,
    Split,
    TextCollator,
    TextDataset,
    build_image_transform,
    to_pil_rgb,
)
from transferkit.errors import ConfigError, DataError
from transferkit.models.spec import ImagePreprocessing


def _pre(
    resize: int = 40, crop: int = 32, mean: float = 0.5, std: float = 0.5, interp: str = "bicubic"
) -> ImagePreprocessing:
    return ImagePreprocessing(resize, crop, (mean,) * 3, (std,) * 3, interp)


@pytest.mark.parametrize(
    "grey, mean, std, expected",
    [
        (255, 0.5, 0.5, 1.0),
        (0, 0.5, 0.5, -1.0),
        (51, 0.5, 0.5, (0.2 - 0.5) / 0.5),
        (51, 0.0, 1.0, 0.2),
    ],
)
def test_constant_grey_image_normalises_exactly(
    grey: int, mean: float, std: float, expected: float
) -> None:
    transform = build_image_transform(_pre(mean=mean, std=std))
    out = transform(Image.new("RGB", (50, 70), (grey,) * 3))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert torch.allclose(out, torch.full_like(out, expected), atol=1e-6)


@pytest.mark.parametrize("train, augment", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("size", [(8, 8), (300, 120)])
def test_output_shape(train: bool, augment: bool, size: tuple[int, int]) -> None:
    out = build_image_transform(_pre(), train=train, augment=augment)(
        Image.new("RGB", size, (10, 200, 30))
    )
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


def test_augmentation_varies_but_eval_does_not() -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    aug = build_image_transform(_pre(), train=True, augment=True)
    evaluation = build_image_transform(_pre())
    torch.manual_seed(0)
    assert not torch.equal(aug(image), aug(image))
    assert torch.equal(evaluation(image), evaluation(image))


def test_unknown_interpolation() -> None:
    with pytest.raises(ConfigError, match="interpolation"):
        build_image_transform(_pre(interp="cubic-ish"))


@pytest.mark.parametrize(
    "item, size",
    [
        (np.full((5, 7), 200, np.uint8), (7, 5)),
        (np.full((5, 7, 1), 200, np.uint8), (7, 5)),
        (np.full((5, 7, 3), 200, np.uint8), (7, 5)),
        (np.full((5, 7, 4), 200, np.uint8), (7, 5)),
        (np.full((4, 4), 200 / 255, np.float32), (4, 4)),  # float in [0, 1]
        (Image.new("L", (3, 2), 200), (3, 2)),
    ],
)
def test_to_pil_rgb_arrays(item, size) -> None:
    image = to_pil_rgb(item)
    assert image.mode == "RGB" and image.size == size
    assert np.asarray(image)[0, 0].tolist() == [200, 200, 200]  # grey copied to 3 channels


def test_to_pil_rgb_files(tmp_path: Path) -> None:
    Image.new("L", (4, 4), 90).save(tmp_path / "grey.png")
    Image.new("RGBA", (4, 4), (1, 2, 3, 0)).save(tmp_path / "rgba.png")
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "deep.png")  # 16-bit grey
    assert np.asarray(to_pil_rgb(str(tmp_path / "grey.png")))[0, 0].tolist() == [90] * 3
    assert np.asarray(to_pil_rgb(tmp_path / "rgba.png"))[0, 0].tolist() == [1, 2, 3]
    assert np.asarray(to_pil_rgb(tmp_path / "deep.png"))[0, 0].tolist() == [255] * 3


def test_sixteen_bit_grey_is_scaled_not_clipped_in_files_and_in_memory(tmp_path: Path) -> None:
    # PIL's convert("RGB") clips 16-bit grey at 255: half-scale 32768 would come out white.
    half = Image.fromarray(np.full((4, 4), 32768, np.uint16))
    half.save(tmp_path / "half.png")
    for item in (tmp_path / "half.png", half):
        assert np.asarray(to_pil_rgb(item))[0, 0].tolist() == [128] * 3


@pytest.mark.parametrize("item", [np.zeros((2, 3, 5), np.uint8), np.zeros(784, np.uint8), 42])
def test_to_pil_rgb_rejects(item) -> None:
    with pytest.raises(DataError):
        to_pil_rgb(item)


def test_image_dataset_with_grey_arrays_and_a_loader() -> None:
    split = Split(
        items=[np.full((8, 8), i * 20, np.uint8) for i in range(6)], labels=[0, 1, 0, 1, 0, 1]
    )
    dataset = ImageDataset(split, build_image_transform(_pre(resize=16, crop=16)))
    image, label = dataset[1]
    assert image.shape == (3, 16, 16) and label == 1
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    batch, labels = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch.shape == (4, 3, 16, 16) and labels.tolist() == [0, 1, 0, 1]


class _FakeTokenizer:
    """Records the call and returns padded ids like a HuggingFace tokenizer."""

    def __call__(self, texts, *, padding, truncation, max_length, return_tensors):
        self.kwargs = dict(
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            return_tensors=return_tensors,
        )
        lengths = [min(len(t.split()), max_length) for t in texts]
        width = max(lengths)
        mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
        return {"input_ids": mask * 7, "attention_mask": mask}


def test_text_dataset_and_collator() -> None:
    dataset = TextDataset(Split(items=["one two three", "one"], labels=[1, 0]))
    assert len(dataset) == 2 and dataset[0] == ("one two three", 1)
    tokenizer = _FakeTokenizer()
    inputs, labels = TextCollator(tokenizer, max_length=2)([dataset[0], dataset[1]])
    assert tokenizer.kwargs == dict(
        padding=True, truncation=True, max_length=2, return_tensors="pt"
    )
    assert inputs["attention_mask"].tolist() == [[1, 1], [1, 0]]
    assert labels.dtype == torch.long and labels.tolist() == [1, 0]


def test_text_collator_rejects_bad_max_length() -> None:
    with pytest.raises(ConfigError, match="max_length"):
        TextCollator(_FakeTokenizer(), max_length=0)
