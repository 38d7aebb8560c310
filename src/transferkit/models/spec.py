"""The ModelSpec: everything a loaded model carries about where it came from and how to feed it.

A ModelSpec travels with every model (``TransferModel.spec``) and is saved in every run folder
(``model_spec.json``), so nobody has to guess the normalisation or the tokenizer later.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Modality = Literal["image", "text"]


@dataclass
class ImagePreprocessing:
    """Eval-time image preprocessing, exactly as the pre-trained weights expect it.

    ``resize_size`` is the short side after resizing, ``crop_size`` the square centre crop;
    pixels are scaled to [0, 1] and then normalised with ``mean`` and ``std`` (per RGB channel).

    Example:
        >>> ImagePreprocessing(resize_size=256, crop_size=224, mean=(0.5,) * 3, std=(0.5,) * 3,
        ...                    interpolation="bicubic").crop_size
        224
    """

    resize_size: int
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"  # one of: nearest, bilinear, bicubic

    def __post_init__(self) -> None:
        self.mean = tuple(float(m) for m in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(s) for s in self.std)  # type: ignore[assignment]
        self.resize_size = int(self.resize_size)
        self.crop_size = int(self.crop_size)

    def at_size(self, crop: int) -> ImagePreprocessing:
        """The same preprocessing for a ``crop`` x ``crop`` input, the resize scaled alike.

        Example:
            >>> ImagePreprocessing(256, 224, (0.5,) * 3, (0.5,) * 3).at_size(64).resize_size
            73
        """
        ratio = self.resize_size / self.crop_size
        return dataclasses.replace(self, crop_size=int(crop), resize_size=int(round(crop * ratio)))


@dataclass
class TextPreprocessing:
    """Tokenizer location and settings for a text encoder.

    ``tokenizer`` is a hub id or a local folder usable with ``AutoTokenizer.from_pretrained``.
    ``pooling`` turns token states [B, T, H] into one vector [B, H]: ``mean`` (attention-masked)
    or ``cls`` (the first token). ``normalize`` L2-normalises that vector (sentence-transformers).
    """

    tokenizer: str
    max_length: int = 128
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = False


@dataclass
class ModelSpec:
    """Where a model came from and how to preprocess its input.

    Attributes:
        source: ``torchvision``, ``timm``, ``hf`` or ``builtin``.
        name: the model name within its source (``resnet18``, ``tf_efficientnet_lite0``, ...).
        modality: ``image`` or ``text``.
        weights: where the weights came from: ``random``, ``torchvision:IMAGENET1K_V1``,
            ``timm:<hub id>``, ``hf:<id or folder>``, ``package:<pip package>`` or ``file:<path>``.
        pretrained: whether the backbone starts from pre-trained weights.
        num_features: width of the pooled feature vector fed to the head.
        num_classes: outputs of the (new) head.
        head_name: attribute path of the classifier in the source model (``fc``, ``classifier.1``).
        layer_groups: names of the ordered layer groups, stem first, ``head`` last.
        image / text: the preprocessing for the modality (the other is ``None``).
        labels: class names in head-output order (empty until a dataset is attached).
        extra: source-specific settings needed to rebuild the architecture offline.

    Example:
        >>> spec = ModelSpec(source="torchvision", name="resnet18", modality="image")
        >>> ModelSpec.from_dict(spec.to_dict()) == spec
        True
    """

    source: str
    name: str
    modality: Modality
    weights: str = "random"
    pretrained: bool = False
    num_features: int = 0
    num_classes: int = 0
    head_name: str = ""
    layer_groups: list[str] = field(default_factory=list)
    image: ImagePreprocessing | None = None
    text: TextPreprocessing | None = None
    labels: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spec_string(self) -> str:
        """The ``source:name`` string that loads this architecture again."""
        return f"{self.source}:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        if data.get("image") is not None:
            data["image"] = ImagePreprocessing(**data["image"])
        if data.get("text") is not None:
            data["text"] = TextPreprocessing(**data["text"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
