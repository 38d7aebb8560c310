"""Unit tests of the training pieces on synthetic tensors: schedule, metrics, loop, head solvers,
feature cache, atomic writes."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from transferkit.config import TrainConfig
from transferkit.errors import ConfigError
from transferkit.io import atomic as rf
from transferkit.io.records import EpochRecord, EventKind, Phase
from transferkit.train.features import CachedFeatures, extract_features
from transferkit.train.head import (
    LBFGS_L2_GRID,
    fit_head_adamw,
    fit_head_lbfgs,
    penalized_cross_entropy,
    temper_head,
)
from transferkit.train.loop import LoopSettings, fit
from transferkit.train.metrics import classification_metrics
from transferkit.train.metrics_log import MetricsLog
from transferkit.train.schedule import warmup_cosine


def _blobs(n_per_class: int = 40, dim: int = 8, classes: int = 3, seed: int = 0, scale: float = 1.0):
    """Separable Gaussian blobs [N, dim] around fixed centres, labels [N]; ``seed`` draws the
    noise only, so different seeds give train and validation samples of the same classes."""
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(123)) * 3
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([centres[c] + torch.randn(n_per_class, dim, generator=g) for c in range(classes)])
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return x * scale, y


def test_warmup_cosine_shape() -> None:
    values = [warmup_cosine(s, 100, 10) for s in range(101)]
    assert values[0] == pytest.approx(0.1)
    assert values[9] == pytest.approx(1.0)
    assert max(values) == pytest.approx(1.0)
    assert values[100] == pytest.approx(0.0, abs=1e-9)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))  # monotone decay after warmup


def test_classification_metrics_values() -> None:
    m = classification_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["n"] == 5
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    # F1: a = 0.5, b = 0.8, c = 0 -> macro 0.4333
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_config_defaults_and_validation() -> None:
    cfg = TrainConfig(model="m", data="d", strategy="full").resolved()
    assert cfg.epochs == 10 and cfg.lr == 1e-4
    assert TrainConfig(model="m", data="d", epochs=3).resolved().epochs == 3
    for bad in ({"strategy": "nope"}, {"batch_size": 0}, {"val_fraction": 0.99}, {"per_class": -1},
                {"head_solver": "sgd"}, {"pooling": "max"}):
        with pytest.raises(ConfigError) as info:
            TrainConfig(model="m", data="d", **bad)
        assert next(iter(bad)) in str(info.value)


def test_config_yaml_round_trip(tmp_path) -> None:
    cfg = TrainConfig(model="builtin:minilm", data="x.csv", per_class=5, lr=3e-4)
    cfg.save(tmp_path / "c.yaml")
    assert TrainConfig.load(tmp_path / "c.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("model: m\ndata: d\nbogus: 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        TrainConfig.load(tmp_path / "bad.yaml")


def test_fit_restores_best_and_stops_early() -> None:
    x, y = _blobs()
    # Validation labels that disagree with training: validation stops improving while training
    # fits, so early stopping must end the run and restore the best validation epoch.
    y_val = (y + torch.randint(0, 2, y.shape, generator=torch.Generator().manual_seed(1))) % 3
    torch.manual_seed(0)
    model = nn.Linear(8, 3)
    train = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    val = DataLoader(TensorDataset(x, y_val), batch_size=64)
    settings = LoopSettings(epochs=50, weight_decay=0.0, patience=3)
    result = fit(model, train, val, [{"params": list(model.parameters()), "lr": 0.05}], settings, phase=Phase.FINE_TUNE)
    assert result.stopped_early and result.epochs_run < 50
    assert result.epochs_run == result.best_epoch + 3
    # training fits while validation stalls: the overfitting guard speaks, once
    assert len(result.warnings) == 1 and "overfitting" in result.warnings[0]
    assert sum(bool(r.events_of(EventKind.OVERFITTING)) for r in result.history) == 1
    assert len(result.history) == result.epochs_run
    with torch.no_grad():  # the best epoch's weights are back in the model
        assert (model(x).argmax(1) == y_val).float().mean().item() == pytest.approx(result.best_val_accuracy)


def test_fit_is_deterministic() -> None:
    x, y = _blobs(seed=1)

    def run() -> list[float]:
        torch.manual_seed(0)
        model = nn.Linear(8, 3)
        train = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
        settings = LoopSettings(epochs=3, weight_decay=0.01, patience=5)
        result = fit(model, train, train, [{"params": list(model.parameters()), "lr": 0.01}], settings,
                     phase=Phase.FINE_TUNE)
        return [h.train_loss for h in result.history]

    assert run() == run()


def test_fit_without_a_gap_raises_no_overfitting_warning() -> None:
    x, y = _blobs()
    model = nn.Linear(8, 3)
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    settings = LoopSettings(epochs=5, weight_decay=0.0, patience=5)
    result = fit(model, loader, loader, [{"params": list(model.parameters()), "lr": 0.05}], settings, phase=Phase.FINE_TUNE)
    assert result.warnings == []


def test_time_budget_stops_between_epochs() -> None:
    import time

    x, y = _blobs(n_per_class=400)
    model = nn.Linear(8, 3)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    settings = LoopSettings(epochs=500, weight_decay=0.0, patience=1000,
                            deadline=time.perf_counter() + 0.3)
    result = fit(model, loader, loader, [{"params": list(model.parameters()), "lr": 0.01}], settings, phase=Phase.FINE_TUNE)
    assert 1 <= result.epochs_run < 500 and result.stopped_early


@pytest.mark.parametrize("solver", ["adamw", "lbfgs"])
def test_head_solvers_fold_standardisation(solver: str) -> None:
    # Tiny coordinates (like L2-normalised embeddings) are what standardisation is for.
    x, y = _blobs(scale=1e-3)
    xv, yv = _blobs(seed=2, scale=1e-3)
    train, val = CachedFeatures(x, y), CachedFeatures(xv, yv)
    if solver == "lbfgs":
        head, chosen = fit_head_lbfgs(train, val, 3)
        assert chosen["l2"] in LBFGS_L2_GRID
    else:
        settings = LoopSettings(epochs=30, weight_decay=1e-4, patience=30)
        head, _ = fit_head_adamw(train, val, 3, settings, 1e-2, 16, torch.Generator().manual_seed(0))
    assert isinstance(head, nn.Linear)
    with torch.no_grad():  # the folded head works on raw (unstandardised) features
        assert (head(xv).argmax(1) == yv).float().mean().item() >= 0.95


def test_temper_head_restores_the_target_loss_and_keeps_every_prediction() -> None:
    # A converged probe on separable few-shot data: training loss ~0, nothing left for LP-FT.
    x, y = _blobs(n_per_class=10)
    settings = LoopSettings(epochs=200, weight_decay=0.0, patience=200)
    train = CachedFeatures(x, y)
    head, _ = fit_head_adamw(train, train, 3, settings, 5e-2, 8, torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = head(x)
    assert F.cross_entropy(before, y).item() < 0.05
    scale = temper_head(head, train, energy=0.5, chunk=7)  # chunks that do not divide N
    with torch.no_grad():
        after = head(x)
    assert 0 < scale < 1
    assert F.cross_entropy(after, y).item() == pytest.approx(0.5 * math.log(3), rel=1e-4)
    assert torch.equal(after.argmax(1), before.argmax(1))
    assert torch.allclose(after, scale * before, atol=1e-5)  # a temperature: weights and bias alike


def test_temper_head_leaves_a_probe_that_already_has_the_loss() -> None:
    head = nn.Linear(8, 3)
    with torch.no_grad():
        head.weight.mul_(1e-3)  # near-uniform predictions: loss ~ ln 3, above 0.5 ln 3
        head.bias.zero_()
    weight = head.weight.clone()
    x, y = _blobs()
    assert temper_head(head, CachedFeatures(x, y), energy=0.5) == 1.0
    assert torch.equal(head.weight, weight)


@pytest.mark.parametrize("energy", [-0.1, 1.0, 2.0])
def test_probe_energy_out_of_range_is_a_config_error(energy: float) -> None:
    with pytest.raises(ConfigError, match="probe_energy: must be in \\[0, 1\\)"):
        TrainConfig(model="m", data="d", strategy="lp-ft", probe_energy=energy)


class _CountingBackbone(nn.Module):
    """forward_features doubles the input and counts calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * 2


@pytest.mark.parametrize("limit_mb", [2048, 0])
def test_extract_features_places_rows_by_index_and_spills(limit_mb: int) -> None:
    x = torch.arange(20.0).reshape(10, 2)
    y = torch.arange(10)
    order = [torch.tensor([7, 2, 9]), torch.tensor([0, 1, 3, 4]), torch.tensor([5, 6, 8])]
    batches = [(x[i], y[i], i) for i in order]
    model = _CountingBackbone()
    cached = extract_features(model, batches, 10, torch.device("cpu"), limit_mb=limit_mb)
    assert torch.equal(cached.features, x * 2)
    assert torch.equal(cached.labels, y)
    assert cached.on_disk == (limit_mb == 0)
    assert model.calls == 3


def test_atomic_writes_leave_no_temporary_files(tmp_path) -> None:
    rf.atomic_write_json(tmp_path / "a.json", {"x": 1})
    rf.atomic_save_weights(tmp_path / "w.safetensors", {"t": torch.ones(2)})
    log = MetricsLog(tmp_path / "m.jsonl")
    log.append(EpochRecord(Phase.HEAD, 1, 0.5, 0.5, 0.5, 0.5))
    log.append(EpochRecord(Phase.HEAD, 2, 0.5, 0.5, 0.5, 0.5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "m.jsonl", "w.safetensors"]
    assert [json.loads(line)["epoch"] for line in (tmp_path / "m.jsonl").read_text().splitlines()] == [1, 2]
    assert torch.equal(rf.load_weights(tmp_path / "w.safetensors")["t"], torch.ones(2))


def test_failed_atomic_write_keeps_old_file(tmp_path) -> None:
    target = tmp_path / "w.safetensors"
    rf.atomic_write_text(target, "old")

    class Boom:
        def savefig(self, *a, **k):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        rf.atomic_save_figure(target, Boom())
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_baseline_keeps_the_starting_weights_when_training_only_hurts() -> None:
    x, y = _blobs()
    model = nn.Linear(8, 3)
    with torch.no_grad():  # a perfect start: a least-squares fit of one-hot targets
        sol = torch.linalg.lstsq(torch.cat([x, torch.ones(len(x), 1)], 1), torch.eye(3)[y]).solution
        model.weight.copy_(sol[:8].T * 50)
        model.bias.copy_(sol[8] * 50)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    wrong = DataLoader(TensorDataset(x, (y + 1) % 3), batch_size=16)  # training pulls it away
    val = DataLoader(TensorDataset(x, y), batch_size=64)
    settings = LoopSettings(epochs=3, weight_decay=0.0, patience=5)
    result = fit(model, wrong, val, [{"params": list(model.parameters()), "lr": 0.5}], settings,
                 phase=Phase.FINE_TUNE, baseline=True)
    assert result.best_epoch == 0
    assert all(torch.equal(model.state_dict()[k], v) for k, v in start.items())


@pytest.mark.parametrize("slice_rows", [50, 7])
def test_hand_written_head_gradient_is_autograds(slice_rows: int) -> None:
    x, y = _blobs(n_per_class=50 // 3 + 1, classes=3)
    x, y = x[:50], y[:50]
    weight = torch.randn(3, x.shape[1], requires_grad=True)
    bias = torch.randn(3, requires_grad=True)
    l2 = 0.3
    reference = F.cross_entropy(x @ weight.T + bias, y) + 0.5 * l2 * weight.pow(2).sum()
    reference.backward()
    slices = zip(x.split(slice_rows), y.split(slice_rows))  # the solver's slices of a big split
    loss, grad_w, grad_b = penalized_cross_entropy(weight.detach(), bias.detach(), slices, len(y), l2)
    assert torch.allclose(loss, reference.detach(), rtol=1e-5)
    assert torch.allclose(grad_w, weight.grad, atol=1e-6) and torch.allclose(grad_b, bias.grad, atol=1e-6)


def test_lbfgs_head_runs_on_one_thread_and_leaves_the_process_state(monkeypatch) -> None:
    x, y = _blobs()
    train, val = CachedFeatures(x, y), CachedFeatures(*_blobs(seed=1))
    threads_in_solver: list[int] = []
    real_step = torch.optim.LBFGS.step

    def step(self, closure):
        threads_in_solver.append(torch.get_num_threads())
        return real_step(self, closure)

    monkeypatch.setattr(torch.optim.LBFGS, "step", step)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    heads, draws = [], []
    try:
        for seed in (123, 456):
            torch.manual_seed(seed)
            heads.append(fit_head_lbfgs(train, val, 3)[0])
            draws.append(torch.rand(3))  # what the caller's random stream looks like afterwards
        assert set(threads_in_solver) == {1}  # the solver's own policy, whoever calls it
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert not torch.equal(*draws)  # the caller's seed still decides: nothing reseeded the process
    assert torch.equal(heads[0].weight, heads[1].weight)  # the solve is reproducible on its own
