"""TransferModel: one interface over every source.

``backbone`` turns the input into pooled features ``[B, F]``; ``head`` is a fresh
``nn.Linear(F, C)``. Source modules build the backbone by *wrapping* the source model (its
final classifier replaced by ``nn.Identity``, or timm's ``reset_classifier(0)``), never by
slicing it, so the source model's own ``forward`` (pooling, dropout, pre-logits) still runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferkit.models.groups import GroupRules, LayerGroup, compute_layer_groups
from transferkit.models.spec import ModelSpec

__all__ = ["TransferModel"]


class TransferModel(nn.Module):
    """A pre-trained backbone with a new linear head.

    Attributes:
        spec: where the model came from and how to preprocess its input.
        backbone: input -> pooled features ``[B, F]``. Image input is float ``[B, 3, H, W]``;
            text input is a dict with ``input_ids`` and ``attention_mask`` (``[B, T]``).
        head: ``nn.Linear(F, C)``, freshly initialised.

    Example:
        >>> from transferkit.models import load_model
        >>> m = load_model("torchvision:resnet18", num_classes=3, pretrained=False)
        >>> m(torch.randn(2, 3, 224, 224)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_features: int,
        num_classes: int,
        spec: ModelSpec,
        group_rules: GroupRules,
    ) -> None:
        """Wrap a backbone.

        Args:
            backbone: module mapping the input to pooled features ``[B, num_features]``.
            num_features: F, the width of the pooled features.
            num_classes: C, the outputs of the new head.
            spec: the ModelSpec; ``num_features``, ``num_classes`` and ``layer_groups`` are filled.
            group_rules: ordered ``(group, prefixes)`` with prefixes relative to ``backbone``
                (``"model.layer1"``); the first is the stem; parameters no prefix names join
                the last of these groups. ``head`` is appended here.
        """
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(num_features, num_classes)
        self.spec = spec
        # Qualify prefixes from the TransferModel root so groups name real parameters.
        self._group_rules: GroupRules = [
            (name, [f"backbone.{p}" if p else "backbone" for p in prefixes]) for name, prefixes in group_rules
        ]
        spec.num_features = int(num_features)
        spec.num_classes = int(num_classes)
        spec.layer_groups = [g.name for g in self.layer_groups()]

    # -- forward ------------------------------------------------------------------------------
    def forward_features(self, x: Any) -> torch.Tensor:
        """Pooled features ``[B, F]`` (image tensor or tokenizer dict in)."""
        return self.backbone(x)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C]`` from pooled features ``[B, F]``."""
        return self.head(feats)

    def forward(self, x: Any) -> torch.Tensor:
        """Logits ``[B, C]``."""
        return self.forward_head(self.forward_features(x))

    # -- head ---------------------------------------------------------------------------------
    def get_classifier(self) -> nn.Linear:
        """The head ``nn.Linear(F, C)``."""
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a fresh ``nn.Linear(F, num_classes)`` on the same device/dtype.

        Example:
            >>> m.reset_classifier(5); m.spec.num_classes  # doctest: +SKIP
            5
        """
        old = self.head
        self.head = nn.Linear(old.in_features, int(num_classes)).to(
            device=old.weight.device, dtype=old.weight.dtype
        )
        self.spec.num_classes = int(num_classes)

    # -- groups -------------------------------------------------------------------------------
    def layer_groups(self) -> list[LayerGroup]:
        """Ordered groups, stem ... blocks ... ``head``; every parameter in exactly one group.

        Returns:
            The groups; the last is ``head`` and holds exactly ``self.head``'s parameters.
        """
        rules = self._group_rules + [("head", ["head"])]
        fallback = self._group_rules[-1][0] if self._group_rules else "head"
        return compute_layer_groups(self, rules, fallback)

    # -- assets -------------------------------------------------------------------------------
    def save_assets(self, folder: str | Path) -> None:
        """Save what an offline rebuild needs (tokenizer and config for text models).

        Image models need nothing: this is then a no-op.

        Args:
            folder: created if missing.
        """
        saver = getattr(self.backbone, "save_assets", None)
        if callable(saver):
            Path(folder).mkdir(parents=True, exist_ok=True)
            saver(Path(folder))

    def tokenizer(self) -> Any:
        """The (cached) ``AutoTokenizer`` of a text model; ``None`` for image models."""
        getter = getattr(self.backbone, "tokenizer", None)
        return getter() if callable(getter) else None

    def extra_repr(self) -> str:
        return f"spec={self.spec.spec_string!r}, weights={self.spec.weights!r}"
