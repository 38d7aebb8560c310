"""Find and remove the final classifier of a plain ``nn.Module`` (torchvision-style models).

A dispatcher where the first matching family wins; a model no family matches raises
:class:`UnsupportedModelError` that lists the supported families. timm and HuggingFace models do
not come here: timm has ``reset_classifier(0)`` and HF encoders have no head.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from transferkit.errors import UnsupportedModelError

__all__ = ["HEAD_FAMILIES", "find_classifier", "strip_classifier", "get_submodule", "set_submodule"]


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    """``model.get_submodule`` that also accepts ``""`` (the model itself)."""
    return model.get_submodule(path) if path else model


def set_submodule(model: nn.Module, path: str, new: nn.Module) -> None:
    """Replace the submodule at dotted ``path`` (``classifier.3``) by ``new``."""
    parent_path, _, leaf = path.rpartition(".")
    setattr(get_submodule(model, parent_path), leaf, new)


def _last_linear(container: nn.Module, prefix: str) -> str | None:
    """Dotted path of the last ``nn.Linear`` inside ``container`` (itself included)."""
    if isinstance(container, nn.Linear):
        return prefix
    found = None
    for name, module in container.named_modules():
        if isinstance(module, nn.Linear):
            found = f"{prefix}.{name}" if name else prefix
    return found


def _attr_linear(attr: str) -> Callable[[nn.Module], str | None]:
    def finder(model: nn.Module) -> str | None:
        module = getattr(model, attr, None)
        return attr if isinstance(module, nn.Linear) else None

    return finder


def _vit(model: nn.Module) -> str | None:
    heads = getattr(model, "heads", None)
    return "heads.head" if isinstance(getattr(heads, "head", None), nn.Linear) else None


def _classifier(model: nn.Module) -> str | None:
    module = getattr(model, "classifier", None)
    return _last_linear(module, "classifier") if isinstance(module, nn.Module) else None


#: (family, finder returning the classifier path or None), first match wins.
HEAD_FAMILIES: list[tuple[str, Callable[[nn.Module], str | None]]] = [
    ("ViT (heads.head)", _vit),
    ("ResNet/ResNeXt/WideResNet/RegNet/ShuffleNet/GoogLeNet/Inception (fc)", _attr_linear("fc")),
    (
        "EfficientNet/MobileNetV2/MobileNetV3/ConvNeXt/MNASNet/MaxViT/VGG/AlexNet/DenseNet "
        "(last Linear in classifier)",
        _classifier,
    ),
    ("Swin (head)", _attr_linear("head")),
]


def find_classifier(model: nn.Module) -> tuple[str, nn.Linear]:
    """Locate the final classifier ``nn.Linear``.

    Args:
        model: a classification model.

    Returns:
        ``(dotted path, the Linear)``.

    Raises:
        UnsupportedModelError: no supported family matches (the message lists them).

    Example:
        >>> import torchvision
        >>> find_classifier(torchvision.models.resnet18())[0]
        'fc'
    """
    for _family, finder in HEAD_FAMILIES:
        path = finder(model)
        if path is not None:
            return path, get_submodule(model, path)  # type: ignore[return-value]
    families = "; ".join(f for f, _ in HEAD_FAMILIES)
    raise UnsupportedModelError(
        f"Cannot find the classifier of a {type(model).__name__} model: no final nn.Linear at a "
        f"known place. Supported families: {families}; timm models (reset_classifier); "
        f"HuggingFace encoders (no head). Use a `timm:` or `hf:` spec for other architectures."
    )


def strip_classifier(model: nn.Module) -> tuple[str, int]:
    """Replace the final classifier by ``nn.Identity`` so ``model(x)`` returns pooled features.

    Dropout and pre-logits layers before it (MobileNetV3's Linear+Hardswish) stay in place.

    Args:
        model: modified in place.

    Returns:
        ``(head path, number of features F)``.
    """
    path, linear = find_classifier(model)
    set_submodule(model, path, nn.Identity())
    return path, int(linear.in_features)
