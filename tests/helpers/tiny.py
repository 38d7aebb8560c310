"""Tiny models built in-process for tests (no downloads, a few thousand parameters each)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["tiny_resnet", "tiny_bert_folder", "TINY_VOCAB", "image_batch", "TinyClassifier"]

# Special tokens first (BertTokenizer convention), then a handful of words.
TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (
    "a man is eating food piece of bread the girl carrying baby good bad movie great terrible "
    "film and it was very not".split()
)


class TinyClassifier(nn.Module):
    """Linear, ReLU, then a linear head, with the ``forward_features`` a TransferModel has:
    [B, inputs] -> features [B, hidden] -> logits [B, classes]."""

    def __init__(self, inputs: int = 8, hidden: int = 16, classes: int = 2) -> None:
        super().__init__()
        self.body, self.head = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU()), nn.Linear(hidden, classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def tiny_resnet(num_classes: int = 10) -> nn.Module:
    """A torchvision ResNet with one BasicBlock per stage (~5 M params, builds in ~0.1 s)."""
    from torchvision.models.resnet import BasicBlock, ResNet

    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes)


def tiny_bert_folder(folder: Path, seed: int = 0) -> Path:
    """Write a 2-layer BERT (hidden 32) with a small WordPiece tokenizer into ``folder``.

    Returns:
        ``folder``, loadable with ``AutoModel/AutoTokenizer.from_pretrained`` (and ``hf:<folder>``).
    """
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(TINY_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(str(folder))
    BertTokenizer(str(vocab), do_lower_case=True).save_pretrained(str(folder))
    return folder


def image_batch(size: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A reproducible float image batch ``[B, 3, size, size]``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=g)
