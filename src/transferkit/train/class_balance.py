"""Imbalanced classes: the warning every run gives, and the class weights ``--class-weights balanced`` uses.

On a training split where one class has many times the examples of another, a classifier
trained to minimise the mean loss (and chosen on plain accuracy) favours the large classes: on
SMS folders with 13 ordinary messages to each spam one, the default feature-extraction head
scored 0.980 accuracy while missing a quarter of the spam (recall 0.66-0.80 over three draws;
`benchmarks/imbalance_suite.py`, docs/defaults.md). Every run therefore says when its classes are imbalanced, and ``class_weights="balanced"`` weights
each class's loss by ``N / (C * n_c)`` (scikit-learn's ``class_weight="balanced"``): each class
then carries the same total weight, and the weights average 1 over the training examples, so
learning rates and the head's L2 strength mean what they did.

The same weights score validation (accuracy and loss weighted by the true class), so early
stopping and the head's selection optimise what the loss does: on splits stratified like the
training split, the weighted accuracy is the balanced accuracy (mean per-class recall). The
test metrics stay unweighted, with balanced accuracy, macro-F1 and per-class recall beside the
accuracy.
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["IMBALANCE_RATIO", "balanced_weights", "imbalance_warning", "weighted_scores", "class_weighting",
           "imbalanced"]

# A largest class with this many times the smallest one's training examples is worth a warning:
# below it (up to 2:1, common in real folders) plain accuracy and macro-F1 rarely disagree much.
IMBALANCE_RATIO = 3.0


def balanced_weights(counts: Sequence[int]) -> torch.Tensor:
    """``N / (C * n_c)`` per class ``[C]``, float32; 0 for a class with no example (it never
    weighs anything). Weighted by these, the examples' weights average 1.

    Example:
        >>> [round(w, 4) for w in balanced_weights([30, 10]).tolist()]
        [0.6667, 2.0]
    """
    n = torch.tensor([float(c) for c in counts])
    present = n > 0
    weights = torch.zeros_like(n)
    weights[present] = n.sum() / (present.sum() * n[present])
    return weights


def imbalance_warning(counts: Sequence[int], classes: Sequence[str], class_weights: str) -> str | None:
    """The run's warning when the largest class has at least ``IMBALANCE_RATIO`` x the smallest
    class's training examples; ``None`` otherwise. It names the counts and what to do.

    Example:
        >>> imbalance_warning([340, 26], ["ham", "spam"], "none")[:60]
        'the training split is imbalanced: ham 340, spam 26 examples '
    """
    if not imbalanced(counts):
        return None
    present = [c for c in counts if c > 0]
    ordered = sorted(zip(counts, classes), key=lambda pair: -pair[0])
    named = [f"{name} {n}" for n, name in ordered]
    listing = ", ".join(named if len(named) <= 6 else [*named[:3], "...", *named[-3:]])
    text = (f"the training split is imbalanced: {listing} examples (largest to smallest, "
            f"{max(present) / min(present):.1f} to 1). Accuracy rewards predicting the large classes; "
            "read the balanced accuracy, macro-F1 and each class's recall in test_metrics.json beside it. ")
    if class_weights == "balanced":
        return text + "Each class's loss is weighted by N / (C x its examples) (--class-weights balanced)."
    return text + ("If the small classes matter, --class-weights balanced weights each class's loss by "
                   "N / (C x its examples) and selects on the balanced accuracy; --per-class N trains on at "
                   "most N examples of each class.")


def imbalanced(counts: Sequence[int]) -> bool:
    """Whether the largest class has at least ``IMBALANCE_RATIO`` x the smallest one's examples
    (classes with none left out).

    Example:
        >>> imbalanced([30, 10]), imbalanced([29, 10, 0])
        (True, False)
    """
    present = [c for c in counts if c > 0]
    return len(present) > 1 and max(present) >= IMBALANCE_RATIO * min(present)


@torch.no_grad()
def weighted_scores(logits: torch.Tensor, labels: torch.Tensor,
                    class_weight: torch.Tensor | None = None) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of ``logits`` [N, C] for ``labels`` [N], each example
    weighted by its class's weight (``None``: plainly; all weights 1 give the plain scores).

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
        >>> acc, _ = weighted_scores(logits, torch.tensor([0, 0, 0, 0]))
        >>> acc, weighted_scores(logits, torch.tensor([0, 0, 1, 1]), torch.tensor([1.0, 1.0]))[0]
        (0.75, 0.75)
    """
    correct = (logits.argmax(1) == labels).float()  # [N]
    class_weight = None if class_weight is None else class_weight.to(logits.device)
    loss = torch.nn.functional.cross_entropy(logits.float(), labels, weight=class_weight)
    if class_weight is None:
        return correct.mean().item(), loss.item()
    weight = class_weight[labels]  # [N]
    return (weight * correct).sum().item() / max(weight.sum().item(), 1e-12), loss.item()


def class_weighting(class_weights: str, counts: Sequence[int], classes: Sequence[str]) -> tuple[torch.Tensor | None, str | None]:
    """A run's class weights (``None`` unless ``class_weights == "balanced"``) and its imbalance
    warning (``None`` when the training split's ``counts`` per class are not imbalanced).

    Example:
        >>> weight, warning = class_weighting("balanced", [3, 1], ["a", "b"])
        >>> [round(w, 4) for w in weight.tolist()], warning.split(":")[0]
        ([0.6667, 2.0], 'the training split is imbalanced')
    """
    weight = balanced_weights(counts) if class_weights == "balanced" else None
    return weight, imbalance_warning(counts, classes, class_weights)
