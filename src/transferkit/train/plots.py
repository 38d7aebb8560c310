"""Learning-curve plot from metrics.jsonl records."""

from __future__ import annotations

from typing import Any, Sequence



def _pyplot() -> Any:
    """matplotlib.pyplot with the file-only Agg backend, imported on first use (it is slow)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def learning_curve_figure(records: Sequence[dict[str, Any]], title: str = "") -> Any:
    """Loss and accuracy for train and validation over epochs, phases marked by dotted lines.

    Epochs of successive phases are laid end to end on the x axis.
    """
    fig, (ax_loss, ax_acc) = _pyplot().subplots(1, 2, figsize=(10, 4))
    xs = list(range(1, len(records) + 1))
    for key, style in (("train", "-"), ("val", "--")):
        ax_loss.plot(xs, [r.get(f"{key}_loss") for r in records], style, label=key)
        ax_acc.plot(xs, [r.get(f"{key}_accuracy") for r in records], style, label=key)
    for i in range(1, len(records)):
        if records[i].get("phase") != records[i - 1].get("phase"):
            for ax in (ax_loss, ax_acc):
                ax.axvline(i + 0.5, color="grey", linestyle=":")
                ax.annotate(str(records[i].get("phase")), (i + 0.6, 0.95), xycoords=("data", "axes fraction"))
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def close(fig: Any) -> None:
    _pyplot().close(fig)
