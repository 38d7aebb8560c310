"""Explorer counts against direct counts, the data multiplier on synthetic curves, the progress
plot's phase and unfreezing marks, and TensorBoard event files.

Models are built in-process (torchvision ResNet-18 without weights, a 2-layer BERT); nothing is
downloaded.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import transferkit as tk
from transferkit import surgery
from transferkit.io.records import upgrade_epoch_dicts
from transferkit.train.plots import phase_changes, unfreeze_events
from transferkit.workflows import data_multipliers, explore_freezing, explore_lora, freezing_counts, scratch_needed
from transferkit.workflows.multiplier import headline, mean_curve
from transferkit.workflows.progress import plot_run
from transferkit.models import load_model

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return load_model("torchvision:resnet18", num_classes=3, pretrained=False)


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    return load_model(f"hf:{tiny_bert_dir}", num_classes=2)


def direct_trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# -- freezing explorer ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet", "bert"])
def test_freezing_counts_equal_a_direct_count(request, name) -> None:
    model = request.getfixturevalue(name)
    names = [g.name for g in surgery.layer_groups(model)]
    rows = freezing_counts(model)
    assert [r["frozen_groups"] for r in rows] == list(range(len(names)))  # 0 .. every backbone group
    total = sum(p.numel() for p in model.parameters())
    for row in rows:
        surgery.set_trainable_groups(model, row["trainable"])
        assert row["trainable"] == names[row["frozen_groups"]:]
        assert row["trainable_params"] == direct_trainable(model)
        assert row["total_params"] == total
        assert row["share"] == pytest.approx(direct_trainable(model) / total)
    assert rows[0]["share"] == 1.0 and rows[-1]["trainable"] == ["head"]
    surgery.set_trainable_groups(model, names)


def test_explore_freezing_writes_json_and_plot(tmp_path, resnet) -> None:
    result = explore_freezing(resnet, out=tmp_path / "f")
    data = json.loads((tmp_path / "f" / "freezing.json").read_text())
    assert data["rows"] == result.rows and len(data["rows"]) == 6
    assert (tmp_path / "f" / "freezing.png").read_bytes()[:8] == PNG
    with pytest.raises(tk.RunFolderError, match="already holds freezing.json"):
        explore_freezing(resnet, out=tmp_path / "f")


# -- LoRA explorer --------------------------------------------------------------------------------
@pytest.mark.parametrize("name, targets", [("bert", None), ("bert", "all-linear"), ("resnet", None),
                                           ("resnet", "layer4")])
@pytest.mark.parametrize("rank", [1, 4])
def test_lora_counts_equal_a_direct_count_after_apply_lora(request, tmp_path, name, targets, rank) -> None:
    from transferkit.config import TrainConfig
    from transferkit.lora import lora_layers, remove_lora
    from transferkit.strategies import get_strategy

    model = request.getfixturevalue(name)
    result = explore_lora(model, ranks=[rank], targets=[targets], out=tmp_path / "l")
    row = result.rows[0]
    # What --strategy lora trains: apply_lora on the targets, then only the factors and the head.
    get_strategy("lora", TrainConfig(model="m", data="d", strategy="lora", lora_rank=rank,
                                     lora_targets=targets)).prepare(model)
    adapted = [n for n, _ in lora_layers(model)]
    try:
        assert row["layers"] == len(adapted)
        assert row["trainable_params"] == direct_trainable(model)
        lora_params = sum(p.numel() for n, p in model.named_parameters() if n.endswith(("lora_A", "lora_B")))
        assert row["lora_params"] == lora_params
        assert sum(layer["lora"] for layer in result.layers) == lora_params  # r (d + k) summed
        assert all(layer["lora"] == rank * (layer["d"] + layer["k"]) and layer["full"] == layer["d"] * layer["k"]
                   for layer in result.layers)
    finally:
        remove_lora(model, merge=False)
        surgery.set_trainable_groups(model, [g.name for g in surgery.layer_groups(model)])
    assert row["full_params"] == sum(p.numel() for p in model.parameters())
    assert (tmp_path / "l" / "lora_savings.png").read_bytes()[:8] == PNG


def test_lora_explorer_default_target_sets(tmp_path, bert) -> None:
    result = explore_lora(bert, ranks=[2, 8], out=tmp_path / "l")
    sets = list(dict.fromkeys(r["target_set"] for r in result.rows))
    assert sets[0] == "default" and "all-linear" in sets
    data = json.loads((tmp_path / "l" / "lora_savings.json").read_text())
    assert data["layer_rank"] == 8 and data["rows"] == result.rows


# -- data multiplier ------------------------------------------------------------------------------
@pytest.mark.parametrize("curve, target, expected", [
    ([(10, 0.5), (100, 0.9)], 0.7, (31.6, "=")),            # halfway on the log axis
    ([(10, 0.5), (100, 0.9)], 0.9, (100, "=")),
    ([(10, 0.5), (30, 0.6), (100, 0.9)], 0.6, (30, "=")),
    ([(10, 0.5), (100, 0.9)], 0.95, (100, ">")),            # never reached: more than the largest
    ([(10, 0.8), (100, 0.9)], 0.7, (10, "<=")),             # matched already at the smallest size
    ([(10, 0.5), (30, 0.8), (100, 0.7)], 0.75, (25.0, "=")),  # the first crossing counts
    ([], 0.5, (None, "none")),
])
def test_scratch_needed(curve, target, expected) -> None:
    n, rel = scratch_needed(curve, target)
    assert rel == expected[1]
    assert n == pytest.approx(expected[0], abs=0.1) if expected[0] is not None else n is None


def test_data_multipliers_on_synthetic_points() -> None:
    points = [{"method": "scratch", "per_class": n, "seed": s, "accuracy": a + d}
              for n, a in ((10, 0.3), (30, 0.5), (100, 0.7), (300, 0.9)) for s, d in ((0, -0.01), (1, 0.01))]
    points += [{"method": "feature-extraction", "per_class": 10, "seed": 0, "accuracy": 0.7},
               {"method": "fine-tune", "per_class": 10, "seed": 0, "accuracy": 0.95},
               {"method": "fine-tune", "per_class": 30, "seed": 0, "accuracy": None}]  # skipped
    assert mean_curve(points, "scratch")[0] == pytest.approx(
        {"per_class": 10, "mean": 0.3, "std": 0.01, "min": 0.29, "max": 0.31, "n": 2})
    by = {(m["method"], m["per_class"]): m for m in data_multipliers(points)}
    assert set(by) == {("feature-extraction", 10), ("fine-tune", 10)}
    fe, ft = by["feature-extraction", 10], by["fine-tune", 10]
    assert (fe["relation"], fe["scratch_per_class"], fe["multiplier"]) == ("=", 100, 10.0)
    assert (ft["relation"], ft["multiplier"]) == (">", 30.0)
    assert "more than the largest size tried" in ft["text"]
    lines = headline(data_multipliers(points))
    assert len(lines) == 1 and "fine-tune" in lines[0] and "more than 30x" in lines[0]


def test_multiplier_interpolates_on_log_per_class() -> None:
    # accuracy linear in log(n): 0.5 at 10, 0.9 at 1000 -> 0.7 at 100 exactly
    n, rel = scratch_needed([(10, 0.5), (1000, 0.9)], 0.7)
    assert rel == "=" and n == pytest.approx(100, rel=1e-3)
    assert math.isclose(data_multipliers([{"method": "scratch", "per_class": 10, "accuracy": 0.5},
                                          {"method": "scratch", "per_class": 1000, "accuracy": 0.9},
                                          {"method": "fine-tune", "per_class": 10, "accuracy": 0.7}])[0]["multiplier"], 10.0)


# -- progress plot and TensorBoard ----------------------------------------------------------------
def test_phase_and_unfreeze_marks() -> None:
    # Schema-1 lines (phases named after the strategy, a list of groups): the upgrade derives
    # the unfreezing events the plot marks.
    records = upgrade_epoch_dicts([
        {"phase": "linear-probe", "groups": ["0"]},
        {"phase": "gradual", "groups": ["head"]},
        {"phase": "gradual", "groups": ["head", "layer4"]},
        {"phase": "gradual", "groups": ["head", "layer4"]},
        {"phase": "gradual", "groups": ["head", "layer4", "layer3"]},
    ])
    assert phase_changes(records) == [(1, "fine-tune")]
    assert unfreeze_events(records) == [(2, ["layer4"]), (4, ["layer3"])]


@pytest.fixture(scope="module")
def gradual_run(tmp_path_factory, tiny_bert_dir, sentiment_csv):
    out = tmp_path_factory.mktemp("gradual") / "run"
    return tk.train(tk.TrainConfig(model=f"hf:{tiny_bert_dir}", data=str(sentiment_csv), strategy="gradual",
                                   epochs=3, patience=5, out=str(out), tensorboard=True))


def test_training_marks_unfreezing_in_metrics_and_plot(gradual_run) -> None:
    from transferkit.workflows.progress import read_metrics

    records = read_metrics(gradual_run.run_dir)
    events = unfreeze_events(records)
    assert [len(added) for _, added in events] == [1, 1]  # one group more at epochs 2 and 3
    path = plot_run(gradual_run.run_dir)
    assert path == gradual_run.run_dir / "progress.png" and path.read_bytes()[:8] == PNG


def test_tensorboard_event_files_hold_the_epochs(gradual_run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list((gradual_run.run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert files
    acc = EventAccumulator(str(gradual_run.run_dir / "tensorboard"))
    acc.Reload()
    assert {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("accuracy/val")] == [1, 2, 3]


def test_plot_refuses_a_folder_that_is_not_a_run(tmp_path) -> None:
    with pytest.raises(tk.RunFolderError, match="not a run folder"):
        plot_run(tmp_path)
