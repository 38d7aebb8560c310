"""Typed records of a run folder: one ``EpochRecord`` per line of ``metrics.jsonl`` and the
``TestMetrics`` of ``test_metrics.json``, each with a ``schema_version``.

Everything that writes them (the training loop, the runner) and everything that reads them
(plots, the HTML report, ``compare``, the dashboard to come) goes through this module, so a
field is named and typed once. Files written before records had a version (schema 1) are read
through :func:`upgrade_epoch_dicts` and :meth:`TestMetrics.from_dict`:

- schema 1 named an end-to-end phase after its strategy (``full``, ``gradual``, ``lp-ft``...):
  those are ``Phase.FINE_TUNE`` now;
- it kept the last group's ``lr`` and the list of ``groups``: the groups become ``lrs`` (each
  with that last rate, the only one recorded) and unfreezing events are derived from the lists;
- it had no ``improved`` flag (``None``: unknown) and no skipped-input counts in the test metrics.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import RunFolderError

__all__ = ["SCHEMA_VERSION", "Phase", "EventKind", "Event", "EpochRecord", "SkippedInputs", "TestMetrics",
           "read_epoch_records", "upgrade_epoch_dicts", "read_test_metrics", "epochs_to_best", "epochs_trained"]

#: 2: the first versioned schema (typed phases, per-group rates, events, ``improved``).
SCHEMA_VERSION = 2


class Phase(str, Enum):
    """What one line of ``metrics.jsonl`` trained."""

    HEAD = "head"  # a new linear head on cached features, AdamW epochs
    HEAD_LBFGS = "head-lbfgs"  # one L2 strength of the L-BFGS head sweep (a sweep step, not an epoch)
    LINEAR_PROBE = "linear-probe"  # LP-FT's first phase: the probe on cached features
    FINE_TUNE = "fine-tune"  # the network end to end, under the strategy's schedule

    def __str__(self) -> str:
        return self.value

    @property
    def is_epoch(self) -> bool:
        """Whether a record of this phase is a training epoch (the L-BFGS sweep is not)."""
        return self is not Phase.HEAD_LBFGS

    @classmethod
    def parse(cls, value: str) -> Phase:
        """A phase from its value; a schema-1 strategy name (``full``, ``lp-ft``...) is FINE_TUNE."""
        try:
            return cls(value)
        except ValueError:
            return cls.FINE_TUNE


class EventKind(str, Enum):
    """Something that happened during an epoch, worth marking on a plot or a dashboard."""

    UNFROZEN = "unfrozen"  # layer groups joined the optimizer at the start of this epoch
    OVERFITTING = "overfitting"  # train accuracy ran ahead of a stalled validation
    EARLY_STOP = "early-stop"  # validation stalled for `patience` epochs: the phase ends here

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Event:
    """One event: its kind, a sentence for people, and the layer groups it concerns."""

    kind: EventKind
    message: str = ""
    groups: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "message": self.message, "groups": list(self.groups)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        return cls(EventKind(data["kind"]), str(data.get("message", "")), tuple(data.get("groups") or ()))


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


@dataclass
class EpochRecord:
    """One epoch of one phase (or one step of the L-BFGS head sweep).

    Attributes:
        phase: what trained.
        epoch: 1-based within the phase (the sweep step for ``HEAD_LBFGS``).
        train_loss / train_accuracy: over the epoch's training batches (label smoothing included).
        val_loss / val_accuracy: on the validation split after the epoch.
        seconds: wall time of the epoch, validation included.
        lrs: learning rate of each optimizer group (layer-group name -> rate at the epoch's
            last step), in the order the groups joined; empty for the L-BFGS sweep.
        improved: this epoch's weights became the phase's best (the ones kept if none
            follows); ``None`` in schema-1 files, where it was not recorded.
        events: unfreezing steps, the overfitting warning, early stopping.
        l2: ``HEAD_LBFGS`` only: the L2 strength of this sweep step.
    """

    phase: Phase
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float = 0.0
    lrs: dict[str, float] = field(default_factory=dict)
    improved: bool | None = None
    events: list[Event] = field(default_factory=list)
    l2: float | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def groups(self) -> list[str]:
        """The optimizer's layer groups during this epoch, in the order they joined."""
        return list(self.lrs)

    def events_of(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind is kind]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of one ``metrics.jsonl`` line."""
        out = dataclasses.asdict(self)
        out["phase"] = self.phase.value
        out["events"] = [e.to_dict() for e in self.events]
        if self.l2 is None:
            del out["l2"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochRecord:
        """A record from one JSON line of the current schema (schema 1: :func:`upgrade_epoch_dicts`)."""
        if data.get("schema_version") is None:
            return upgrade_epoch_dicts([data])[0]
        return cls(
            phase=Phase.parse(data["phase"]), epoch=int(data["epoch"]),
            train_loss=_float(data.get("train_loss")), train_accuracy=_float(data.get("train_accuracy")),
            val_loss=_float(data.get("val_loss")), val_accuracy=_float(data.get("val_accuracy")),
            seconds=float(data.get("seconds") or 0.0),
            lrs={str(k): float(v) for k, v in (data.get("lrs") or {}).items()},
            improved=data.get("improved"), events=[Event.from_dict(e) for e in data.get("events") or []],
            l2=data.get("l2"), schema_version=int(data["schema_version"]),
        )


def upgrade_epoch_dicts(rows: Sequence[dict[str, Any]]) -> list[EpochRecord]:
    """Schema-1 ``metrics.jsonl`` objects (no ``schema_version``) as records.

    Unfreezing events are derived as schema 1's readers did: a record whose ``groups`` list is
    longer than the previous record's in the same phase gained the groups that are new.

    Example:
        >>> recs = upgrade_epoch_dicts([{"phase": "gradual", "epoch": 1, "groups": ["head"], "lr": 0.1},
        ...                             {"phase": "gradual", "epoch": 2, "groups": ["head", "layer4"], "lr": 0.1}])
        >>> recs[1].phase.value, recs[1].events[0].groups
        ('fine-tune', ('layer4',))
    """
    records: list[EpochRecord] = []
    previous: dict[str, Any] | None = None
    for row in rows:
        if row.get("schema_version") is not None:  # a current line among old ones: take it as it is
            records.append(EpochRecord.from_dict(row))
            previous = row
            continue
        groups = [str(g) for g in row.get("groups") or []]
        events = []
        if previous is not None and previous.get("phase") == row.get("phase"):
            before = previous.get("groups") or []
            added = tuple(g for g in groups if g not in before)
            if len(groups) > len(before) and added:
                events.append(Event(EventKind.UNFROZEN, f"unfrozen: {', '.join(added)}", added))
        if row.get("warning"):
            events.append(Event(EventKind.OVERFITTING, str(row["warning"])))
        lr = row.get("lr")
        records.append(EpochRecord(
            phase=Phase.parse(str(row.get("phase"))), epoch=int(row.get("epoch") or len(records) + 1),
            train_loss=_float(row.get("train_loss")), train_accuracy=_float(row.get("train_accuracy")),
            val_loss=_float(row.get("val_loss")), val_accuracy=_float(row.get("val_accuracy")),
            seconds=float(row.get("seconds") or 0.0),
            lrs={g: float(lr) for g in groups} if lr is not None else {}, improved=None, events=events,
            l2=row.get("l2"), schema_version=1,
        ))
        previous = row
    return records


def read_epoch_records(path: str | Path, *, complete_only: bool = False) -> list[EpochRecord]:
    """The records of a ``metrics.jsonl`` (of any schema); lines that are not JSON objects with
    a phase are skipped (a file being written by another process). ``complete_only``: a last
    line without its newline is still being written and is ignored too, even if it parses.

    Example:
        >>> read_epoch_records("runs/<run>/metrics.jsonl")[0].phase  # doctest: +SKIP
        <Phase.HEAD: 'head'>
    """
    rows = []
    text = Path(path).read_text(encoding="utf-8")
    if complete_only:
        text = text[: text.rfind("\n") + 1]
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and "phase" in value:
            rows.append(value)
    if any(r.get("schema_version") is None for r in rows):
        return upgrade_epoch_dicts(rows)
    return [EpochRecord.from_dict(r) for r in rows]


def epochs_trained(records: Iterable[EpochRecord]) -> int:
    """Training epochs over all phases (L-BFGS sweep steps are not epochs)."""
    return sum(1 for r in records if r.phase.is_epoch)


def epochs_to_best(records: Sequence[EpochRecord]) -> int | None:
    """Epochs trained, over all phases, until the epoch whose weights the run kept.

    The loop keeps the last ``improved`` epoch of the final phase (0 when none improved on the
    starting weights, as when LP-FT keeps its probe); every epoch of earlier phases counts.
    ``None`` when the final phase is the L-BFGS sweep (no epochs) or the records do not say
    which epoch improved (schema 1).

    Example:
        >>> mk = lambda p, e, imp: EpochRecord(Phase(p), e, 0, 0, 0, 0, improved=imp)
        >>> epochs_to_best([mk("head", 1, True), mk("fine-tune", 1, True), mk("fine-tune", 2, False)])
        2
    """
    if not records or not records[-1].phase.is_epoch:
        return None
    final = [r for r in records if r.phase is records[-1].phase]
    if any(r.improved is None for r in final):
        return None
    earlier = epochs_trained(r for r in records if r.phase is not records[-1].phase)
    kept = max((r.epoch for r in final if r.improved), default=0)
    return earlier + kept


@dataclass
class SkippedInputs:
    """Inputs that loading skipped or repaired: counts and the first names of each; and
    ``duplicates``, examples repeating an earlier one (kept, each group in one split)."""

    unreadable_images: int = 0
    non_utf8_texts: int = 0
    unreadable_image_names: list[str] = field(default_factory=list)
    non_utf8_text_names: list[str] = field(default_factory=list)
    too_large_images: int = 0  # over --max-image-pixels
    too_large_image_names: list[str] = field(default_factory=list)
    bad_rows: int = 0  # table rows with more fields than the header, skipped by --skip-bad-rows
    bad_row_names: list[str] = field(default_factory=list)
    duplicates: int = 0

    def sentences(self, limit: int = 20) -> list[str]:
        """One line per kind, for people (the report, the dashboard)."""
        out = []
        for count, names, what in ((self.unreadable_images, self.unreadable_image_names,
                                    "skipped {} unreadable or corrupt image(s)"),
                                   (self.non_utf8_texts, self.non_utf8_text_names,
                                    "{} text(s) were not valid UTF-8 and were decoded with replacement characters"),
                                   (self.too_large_images, self.too_large_image_names,
                                    "skipped {} image(s) over the pixel cap"),
                                   (self.bad_rows, self.bad_row_names,
                                    "skipped {} row(s) with more fields than the header")):
            if count:
                shown = ", ".join(names[:limit]) + (f", ... ({count - min(limit, len(names))} more)"
                                                   if count > min(limit, len(names)) else "")
                out.append(f"data: {what.format(count)}: {shown}")
        if self.duplicates:
            out.append(f"data: {self.duplicates} duplicate example(s), each group kept in one split")
        return out


@dataclass
class TestMetrics:
    """``test_metrics.json``: the held-out metrics of a finished run and how it got there.

    Attributes:
        accuracy, macro_f1, n, classes, confusion_matrix (rows: true), per_class (recall, support).
        balanced_accuracy: the mean per-class recall (``None`` in runs from before it was kept).
        split: which data was scored (``test``).
        model, strategy: the run's model spec and strategy.
        total_params, trainable_params: as trained (LoRA: the factors and the head).
        seconds: the run's wall time; launch_seconds: with ``--nproc``, the part of it spent
            starting the workers before rank 0's clock (spawning, imports, rendezvous);
            peak_memory_mb: its resident-memory peak;
            peak_cuda_memory_mb: on CUDA only.
        epochs: training epochs over all phases; epochs_to_best: see :func:`epochs_to_best`;
            best_epoch: the kept epoch of the final phase (0: its starting weights).
        lbfgs: the L-BFGS head's chosen ``l2``, ``val_accuracy``, ``val_loss`` (the selection's).
        head: a head on cached features: ``solver``, ``selection`` (``val`` or ``cv-K``), the
            chosen ``l2`` or ``epochs``, the selection's ``score`` and ``loss``, ``refit`` (fitted
            again on train + val) and the ``examples`` it was fitted on.
        probe_scale: LP-FT: the factor applied to the probe before fine-tuning.
        wise_alpha: LP-FT: the share of phase 2's change to the probe's weights that was kept
            (``--wise-alpha``; None when the fine-tuned weights were kept as they are).
        precision: the arithmetic precision the run trained and encoded in (``fp32``, ``bf16``,
            ``fp16``: ``--precision`` resolved on its device).
        warnings: every warning of the run (overfitting, ignored options, time budget...).
        skipped: inputs that loading skipped or repaired.
    """

    __test__ = False  # not a pytest test class, despite the name

    accuracy: float
    macro_f1: float
    n: int
    classes: list[str] = field(default_factory=list)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    balanced_accuracy: float | None = None
    split: str = "test"
    model: str = ""
    strategy: str = ""
    total_params: int | None = None
    trainable_params: int | None = None
    seconds: float | None = None
    launch_seconds: float | None = None
    peak_memory_mb: float | None = None
    peak_cuda_memory_mb: float | None = None
    epochs: int | None = None
    epochs_to_best: int | None = None
    best_epoch: int | None = None
    lbfgs: dict[str, float] | None = None
    head: dict[str, Any] | None = None
    probe_scale: float | None = None
    wise_alpha: float | None = None
    precision: str | None = None
    warnings: list[str] = field(default_factory=list)
    skipped: SkippedInputs = field(default_factory=SkippedInputs)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestMetrics:
        """A record from ``test_metrics.json`` of any schema (missing fields take their defaults;
        keys this version does not know are ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["skipped"] = SkippedInputs(**{k: v for k, v in (data.get("skipped") or {}).items()
                                             if k in {f.name for f in dataclasses.fields(SkippedInputs)}})
        values.setdefault("schema_version", 1)
        try:
            return cls(**values)
        except TypeError as exc:
            raise RunFolderError(f"test_metrics.json lacks a field ({exc}); train the run again.") from None


def read_test_metrics(path: str | Path) -> TestMetrics:
    """``test_metrics.json`` as a record (``RunFolderError`` naming the file when unreadable)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path} is not valid JSON ({exc}); it may have been edited or cut short.") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} does not hold a JSON object of test metrics; train the run again.")
    return TestMetrics.from_dict(data)
