"""Progress display: tqdm bars on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
from typing import Any, Iterable, Iterator

from tqdm.auto import tqdm

log = logging.getLogger("transferkit")


class Progress:
    """Epoch and batch progress bars (rate, ETA, current metrics) or one log line per epoch.

    Bars are drawn only when standard error is a terminal, so logs and CI output stay clean.
    """

    def __init__(self, enabled: bool | None = None) -> None:
        self.bars = sys.stderr.isatty() if enabled is None else enabled

    def batches(self, iterable: Iterable[Any], desc: str, total: int | None = None) -> Iterator[Any]:
        if not self.bars:
            yield from iterable
            return
        bar = tqdm(iterable, desc=desc, total=total, leave=False, unit="batch", dynamic_ncols=True)
        try:
            yield from bar
        finally:
            bar.close()

    def epochs(self, total: int, desc: str) -> "EpochBar":
        return EpochBar(total, desc, self.bars)


class EpochBar:
    """One bar over the epochs of a phase whose postfix shows the latest metrics."""

    def __init__(self, total: int, desc: str, bars: bool) -> None:
        self.desc = desc
        self.bar = tqdm(total=total, desc=desc, unit="epoch", dynamic_ncols=True) if bars else None

    def update(self, epoch: int, metrics: dict[str, float]) -> None:
        shown = {k: f"{v:.4f}" for k, v in metrics.items() if isinstance(v, float)}
        if self.bar is not None:
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)
        else:
            text = " ".join(f"{k}={v}" for k, v in shown.items())
            log.info("%s epoch %d: %s", self.desc, epoch, text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
