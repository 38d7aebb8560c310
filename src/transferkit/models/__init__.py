"""Pre-trained models from torchvision, timm, HuggingFace and pip packages, behind one interface.

Example:
    >>> from transferkit.models import load_model
    >>> model = load_model("torchvision:resnet18", num_classes=3, pretrained=False)
    >>> model.spec.head_name
    'fc'
"""

from transferkit.models.base import TransferModel
from transferkit.models.groups import LayerGroup
from transferkit.models.registry import (
    ModelInfo,
    build_model_from_spec,
    check_model_spec,
    list_models,
    load_model,
    parse_model_spec,
)
from transferkit.models.spec import ImagePreprocessing, ModelSpec, TextPreprocessing

__all__ = [
    "load_model",
    "build_model_from_spec",
    "list_models",
    "ModelInfo",
    "TransferModel",
    "LayerGroup",
    "parse_model_spec",
    "check_model_spec",
    "ModelSpec",
    "ImagePreprocessing",
    "TextPreprocessing",
]
