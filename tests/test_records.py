"""The typed run records: one owner for metrics.jsonl lines and test_metrics.json, and run
folders written before the records had a schema version still load.

``fixtures/schema1_gradual_run`` was written by transferkit before this schema (a tiny BERT,
gradual unfreezing, 3 epochs): phases named after the strategy, ``lr`` and ``groups`` per line,
no skipped-input counts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import transferkit as tk
from transferkit.io.records import (
    SCHEMA_VERSION,
    EpochRecord,
    Event,
    EventKind,
    Phase,
    TestMetrics,
    epochs_to_best,
    read_epoch_records,
    read_test_metrics,
)
from transferkit.workflows import plot_run, write_report

from conftest import run_cli, write_sentiment_csv

OLD_RUN = Path(__file__).parent / "fixtures" / "schema1_gradual_run"


def rec(phase: str, epoch: int, improved: bool | None, val: float = 0.5) -> EpochRecord:
    return EpochRecord(Phase(phase), epoch, 0.7, 0.5, 0.6, val, improved=improved)


@pytest.mark.parametrize("records, expected", [
    ([], None),
    ([rec("head-lbfgs", 1, True)], None),  # an L-BFGS sweep has no epochs
    ([rec("fine-tune", e, imp) for e, imp in ((1, True), (2, True), (3, False), (4, False))], 2),
    # LP-FT: every epoch of the probe phase counts, then the kept epoch of phase 2
    ([rec("linear-probe", e, True) for e in (1, 2, 3)] + [rec("fine-tune", 1, True), rec("fine-tune", 2, True)], 5),
    # LP-FT that kept its probe: no phase-2 epoch beat the starting weights
    ([rec("linear-probe", e, True) for e in (1, 2, 3)] + [rec("fine-tune", 1, False)], 3),
    # an L-BFGS probe before fine-tuning is a sweep, not epochs
    ([rec("head-lbfgs", s, s == 2) for s in (1, 2, 3)] + [rec("fine-tune", 1, False), rec("fine-tune", 2, True)], 2),
    ([rec("fine-tune", 1, None)], None),  # schema 1: which epoch was kept is not recorded
])
def test_epochs_to_best(records, expected) -> None:
    assert epochs_to_best(records) == expected


def test_epoch_record_round_trip() -> None:
    record = EpochRecord(Phase.FINE_TUNE, 2, 0.4, 0.9, 0.5, 0.8, seconds=1.5, lrs={"head": 1e-3, "layer4": 1e-4},
                         improved=True, events=[Event(EventKind.UNFROZEN, "unfrozen: layer4", ("layer4",))])
    line = json.loads(json.dumps(record.to_dict()))
    assert line["phase"] == "fine-tune" and line["schema_version"] == SCHEMA_VERSION and "l2" not in line
    assert EpochRecord.from_dict(line) == record
    assert record.groups == ["head", "layer4"]


def test_test_metrics_ignores_unknown_keys_and_fills_missing_ones() -> None:
    metrics = TestMetrics.from_dict({"accuracy": 0.5, "macro_f1": 0.4, "n": 2, "from_the_future": 1})
    assert (metrics.schema_version, metrics.warnings, metrics.skipped.unreadable_images) == (1, [], 0)
    with pytest.raises(tk.RunFolderError, match="train the run again"):
        TestMetrics.from_dict({"accuracy": 0.5})


def test_a_run_written_before_the_schema_reads_as_records() -> None:
    records = read_epoch_records(OLD_RUN / "metrics.jsonl")
    assert [(r.phase, r.epoch, r.schema_version) for r in records] == [(Phase.FINE_TUNE, e, 1) for e in (1, 2, 3)]
    assert [r.groups for r in records] == [["head"], ["head", "blocks.1"], ["head", "blocks.1", "blocks.0"]]
    assert [[e.groups for e in r.events_of(EventKind.UNFROZEN)] for r in records] == [[], [("blocks.1",)], [("blocks.0",)]]
    assert epochs_to_best(records) is None  # not recorded then; the test metrics have the run's own count
    metrics = read_test_metrics(OLD_RUN / "test_metrics.json")
    assert (metrics.schema_version, metrics.strategy, metrics.epochs_to_best, metrics.n) == (1, "gradual", 3, 3)


def test_a_run_written_before_the_schema_loads_predicts_plots_and_reports(tmp_path, capsys) -> None:
    run = shutil.copytree(OLD_RUN, tmp_path / "old")
    assert tk.load_run(run).config.strategy == "gradual"
    rows = tk.predict(run, ["good great film", "bad terrible movie"], top_k=2)
    assert [len(r["top_k"]) for r in rows] == [2, 2] and {r["label"] for r in rows} <= {"neg", "pos"}
    csv = write_sentiment_csv(tmp_path / "new.csv", per_class=4, seed=3)
    assert tk.evaluate(run, str(csv))["n"] == 8
    assert plot_run(run).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = write_report(run).read_text()
    assert "Test metrics" in text and "Training curves" in text
    code, out, err = run_cli(capsys, "evaluate", run, "--data", csv, "--json")
    assert code == 0 and json.loads(out)["n"] == 8, err


def test_new_runs_write_the_current_schema(tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    result = tk.train(tk.TrainConfig(model=f"hf:{tiny_bert_dir}", data=str(sentiment_csv), strategy="lp-ft",
                                     epochs=2, out=str(tmp_path / "r")))
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert {line["schema_version"] for line in lines} == {SCHEMA_VERSION}
    records = read_epoch_records(result.run_dir / "metrics.jsonl")
    # LP-FT's probe is the default L-BFGS head: its sweep steps are head-lbfgs records.
    assert records[0].phase is Phase.HEAD_LBFGS and records[-1].phase is Phase.FINE_TUNE
    assert tk.train(tk.TrainConfig(model=f"hf:{tiny_bert_dir}", data=str(sentiment_csv), strategy="lp-ft",
                                   head_solver="adamw", refit=False, epochs=2, out=str(tmp_path / "a"))
                    ).metrics.head["solver"] == "adamw"
    adamw = read_epoch_records(tmp_path / "a" / "metrics.jsonl")
    assert adamw[0].phase is Phase.LINEAR_PROBE and adamw[-1].phase is Phase.FINE_TUNE
    assert all(r.improved is not None and (r.lrs or r.phase is Phase.HEAD_LBFGS) for r in records)
    on_disk = read_test_metrics(result.run_dir / "test_metrics.json")
    assert on_disk == result.metrics and on_disk.schema_version == SCHEMA_VERSION
    assert on_disk.epochs_to_best == epochs_to_best(records)
    assert on_disk.epochs == sum(1 for r in records if r.phase.is_epoch)
