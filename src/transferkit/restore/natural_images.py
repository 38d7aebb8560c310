"""Natural images that ship offline: the pre-training set of the built-in denoiser and the held-out
set its figures are measured on (never seen in pre-training).

The held-out set is named ``transferkit-heldout``: camera, moon (scikit-image) and ascent
(PyWavelets) in grey; astronaut, coffee and chelsea (scikit-image) and baboon, fruits and butterfly
(Debian ``opencv-doc``) in colour. The opencv-doc images are used only where that package is
installed; the rest ship with pip packages transferkit already depends on.

Every image is returned as float32 in [0, 1], shape [C, H, W] with C = 1 (grey) or 3 (colour).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

OPENCV_SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")

HELD_OUT_GREY = ("skimage:camera", "skimage:moon", "pywt:ascent")
HELD_OUT_COLOUR = ("skimage:astronaut", "skimage:coffee", "skimage:chelsea",
                   "opencv:baboon.jpg", "opencv:fruits.jpg", "opencv:butterfly.jpg")
HELD_OUT = HELD_OUT_GREY + HELD_OUT_COLOUR

# scikit-image samples that need no download, minus the held-out ones and their copies (cat is
# chelsea) and the synthetic binary ones (binary_blobs, horse, checkerboard): no natural texture.
SKIMAGE_TRAINING = ("brick", "grass", "gravel", "cell", "clock", "coins", "hubble_deep_field",
                    "immunohistochemistry", "retina", "rocket", "page", "text", "colorwheel", "logo",
                    "microaneurysms")
# opencv-doc examples that are photographs of scenes (not calibration boards, logos or masks).
OPENCV_TRAINING = ("aero1.jpg", "aero3.jpg", "apple.jpg", "board.jpg", "building.jpg", "home.jpg",
                   "HappyFish.jpg", "leuvenA.jpg", "leuvenB.jpg", "messi5.jpg",
                   "orange.jpg", "smarties.png", "squirrel_cls.jpg", "starry_night.jpg", "stuff.jpg",
                   "graf1.png", "graf3.png", "rubberwhale1.png", "basketball1.png", "box_in_scene.png",
                   "chicky_512.png", "notes.png", "pic1.png", "pic3.png", "pic5.png", "sudoku.png",
                   "text_defocus.jpg", "Blender_Suzanne1.jpg", "ela_original.jpg", "left01.jpg",
                   "right05.jpg", "aloeL.jpg", "licenseplate_motion.jpg", "cards.png")


def as_chw_float(image: np.ndarray) -> torch.Tensor:
    """[H, W] or [H, W, C] uint8/bool/float -> float32 [C, H, W] in [0, 1]; alpha dropped."""
    array = np.asarray(image)
    if array.dtype == np.bool_:
        array = array.astype(np.float32)
    elif array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    else:
        array = array.astype(np.float32)
        array = (array - array.min()) / max(float(array.max() - array.min()), 1e-8)
    if array.ndim == 2:
        array = array[:, :, None]
    array = array[:, :, :3]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def load_named(name: str) -> torch.Tensor | None:
    """One image by its ``source:name`` (see the module docstring); None where its source is absent."""
    source, _, key = name.partition(":")
    if source == "skimage":
        import skimage.data
        return as_chw_float(getattr(skimage.data, key)())
    if source == "pywt":
        import pywt.data
        return as_chw_float(getattr(pywt.data, key)())
    if source == "opencv":
        path = OPENCV_SAMPLES / key
        if not path.is_file():
            return None
        from PIL import Image
        with Image.open(path) as opened:
            return as_chw_float(np.asarray(opened.convert("RGB")))
    raise ValueError(f"unknown image source in {name!r}")


def load_set(names: tuple[str, ...] | list[str]) -> dict[str, torch.Tensor]:
    """The images of ``names`` that this machine has, in order."""
    images = {}
    for name in names:
        image = load_named(name)
        if image is not None:
            images[name] = image
    return images


def training_names() -> list[str]:
    """The pre-training set: never any held-out image."""
    names = [f"skimage:{key}" for key in SKIMAGE_TRAINING]
    names += [f"opencv:{key}" for key in OPENCV_TRAINING]
    assert not set(names) & set(HELD_OUT)
    return names
