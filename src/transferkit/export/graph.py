"""What gets exported: a TransferModel wrapped so that its inputs are plain, named tensors.

Exporters (ONNX, TorchScript, TensorRT) want ``forward(t1, t2, ...)`` with tensors only, while a
text TransferModel takes a tokenizer dict. :func:`build_graph` wraps the model (or only its
backbone, for feature extraction) and puts a sample batch in the matching order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["GraphInputs", "build_graph", "TEXT_INPUTS", "with_padding", "at_least_two"]

#: Tokenizer tensors an exported text model may take, in argument order.
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class GraphInputs:
    """Named sample inputs for an exporter.

    Attributes:
        names: ``["input"]`` (images) or a prefix-free subset of :data:`TEXT_INPUTS`.
        tensors: sample values in the order of ``names``: float [B, 3, H, W], or int64 [B, T] each.
        modality: ``image`` or ``text``.
    """

    names: list[str]
    tensors: tuple[torch.Tensor, ...]
    modality: str

    def as_feed(self) -> dict[str, Any]:
        """``{name: numpy array}`` for ONNX Runtime, in the exported dtypes (images float32,
        token tensors int64)."""
        dtype = torch.float32 if self.modality == "image" else torch.int64
        return {n: t.detach().cpu().to(dtype).contiguous().numpy() for n, t in zip(self.names, self.tensors)}

    def batch(self) -> int:
        return int(self.tensors[0].shape[0])

    def slice(self, start: int, stop: int) -> "GraphInputs":
        """Rows ``start:stop`` of every tensor."""
        return GraphInputs(self.names, tuple(t[start:stop] for t in self.tensors), self.modality)


class ImageGraph(nn.Module):
    """``input`` [B, 3, H, W] float -> logits [B, C] (or pooled features [B, F])."""

    def __init__(self, model: nn.Module, features: bool = False) -> None:
        super().__init__()
        self.model = model
        self.features = features

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - the ONNX input name
        return self.model.forward_features(input) if self.features else self.model(input)


class TextGraph(nn.Module):
    """``input_ids, attention_mask[, token_type_ids]`` [B, T] int64 -> logits [B, C] (or [B, F])."""

    def __init__(self, model: nn.Module, features: bool = False) -> None:
        super().__init__()
        self.model = model
        self.features = features

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            batch["token_type_ids"] = token_type_ids
        return self.model.forward_features(batch) if self.features else self.model(batch)


def _text_names(model: nn.Module, batch: dict[str, torch.Tensor]) -> list[str]:
    """The tokenizer tensors the encoder uses, in argument order (attention_mask always)."""
    accepted = getattr(model.backbone, "_input_names", TEXT_INPUTS)
    names = [n for n in TEXT_INPUTS if n in batch and (n in accepted or n == "attention_mask")]
    if names[:2] != ["input_ids", "attention_mask"]:
        from ..errors import ExportError

        raise ExportError(
            f"A text model is exported with input_ids and attention_mask, but its tokenizer gives "
            f"{sorted(batch)}; this tokenizer is not supported for export."
        )
    return names


def build_graph(model: nn.Module, sample: Any, *, features: bool = False) -> tuple[nn.Module, GraphInputs]:
    """Wrap a TransferModel for export and order a sample batch to match.

    Args:
        model: a TransferModel (eval mode).
        sample: an image batch [B, 3, H, W] or a tokenizer dict of [B, T] tensors.
        features: export the backbone only (pooled features [B, F]) instead of the logits.

    Returns:
        ``(module, inputs)``: ``module(*inputs.tensors)`` gives the model's output.

    Example:
        >>> graph, inputs = build_graph(model, torch.randn(2, 3, 224, 224))  # doctest: +SKIP
        >>> inputs.names
        ['input']
    """
    if isinstance(sample, torch.Tensor):
        x = sample.float().contiguous()  # exporters and runtimes take NCHW
        return ImageGraph(model, features).eval(), GraphInputs(["input"], (x,), "image")
    batch = {k: v for k, v in dict(sample).items() if isinstance(v, torch.Tensor)}
    names = _text_names(model, batch)
    tensors = tuple(batch[n].long() for n in names)
    return TextGraph(model, features).eval(), GraphInputs(names, tensors, "text")


def at_least_two(sample: Any) -> Any:
    """A batch of at least two rows: exporters specialise a batch of one to a fixed size."""
    def grow(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t, t]) if t.shape[0] == 1 else t

    if isinstance(sample, torch.Tensor):
        return grow(sample)
    return {k: grow(v) for k, v in dict(sample).items()}


def with_padding(sample: Any, pad_id: int = 0) -> Any:
    """A text batch with at least one padded position, same shape.

    Tracing records one branch of Python ``if`` statements; HF models skip the attention mask
    when it is all ones, so a sample without padding would give a graph that ignores padding.
    When no position is padded, the last token of the last row becomes padding (``attention_mask``
    0); the shape stays, so it never exceeds the tokenizer's ``max_length``.
    """
    if isinstance(sample, torch.Tensor):
        return sample
    batch = dict(sample)
    mask = batch.get("attention_mask")
    if mask is None or bool((mask == 0).any()):
        return batch
    padded = {k: v.clone() for k, v in batch.items()}
    for key, value in padded.items():
        value[-1, -1] = pad_id if key == "input_ids" else 0  # [B, T]: one pad position
    return padded
