"""Classification metrics computed from integer labels and predictions."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, balanced accuracy, the confusion matrix and per-class recall.

    Args:
        y_true: true label indices, length N.
        y_pred: predicted label indices, length N.
        classes: class names; index i names label i.

    Returns:
        ``{"accuracy", "macro_f1", "balanced_accuracy", "n", "classes", "confusion_matrix" (rows =
        true), "per_class"}``; balanced accuracy is the mean recall of the classes in ``y_true``
        (scikit-learn's ``balanced_accuracy_score``), what accuracy hides on imbalanced classes.

    Example:
        >>> classification_metrics([0, 1, 1], [0, 1, 0], ["a", "b"])["accuracy"]
        0.6666666666666666
    """
    from sklearn.metrics import (  # lazy: sklearn takes ~1 s to import
        confusion_matrix,
        f1_score,
    )

    y_true_arr = np.asarray(y_true, dtype=np.int64)
    y_pred_arr = np.asarray(y_pred, dtype=np.int64)
    labels = list(range(len(classes)))
    n = int(y_true_arr.size)
    if n == 0:
        return {"accuracy": float("nan"), "macro_f1": float("nan"), "balanced_accuracy": float("nan"), "n": 0,
                "classes": list(classes)}
    cm = confusion_matrix(y_true_arr, y_pred_arr, labels=labels)
    support = cm.sum(axis=1)
    recall = np.divide(np.diag(cm), support, out=np.zeros(len(labels)), where=support > 0)
    # Macro-F1 over the classes present in the truth, so a split missing a class is not punished
    # for it, while a class predicted but absent still lowers precision elsewhere.
    present = [i for i in labels if support[i] > 0]
    macro_f1 = f1_score(y_true_arr, y_pred_arr, labels=present, average="macro", zero_division=0)
    return {
        "accuracy": float((y_true_arr == y_pred_arr).mean()),
        "macro_f1": float(macro_f1),
        "balanced_accuracy": float(recall[present].mean()),
        "n": n,
        "classes": list(classes),
        "confusion_matrix": cm.tolist(),
        "per_class": {
            name: {"recall": float(recall[i]), "support": int(support[i])}
            for i, name in enumerate(classes)
        },
    }
