"""Choosing the head on cached features: k-fold CV on tiny validation splits, refit on train + val."""

from __future__ import annotations

import pytest
import torch

from transferkit.io.records import Phase
from transferkit.train.features import CachedFeatures
from transferkit.train.head import LBFGS_L2_GRID
from transferkit.train.head_select import (
    CV_BELOW_PER_CLASS,
    AdamWHead,
    cv_folds,
    select_and_fit_head,
)
from transferkit.train.loop import LoopSettings, fit
from transferkit.train.metrics_log import MetricsLog


def _blobs(per_class: int, classes: int = 3, dim: int = 16, seed: int = 0, noise: float = 1.5) -> CachedFeatures:
    g = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(classes, dim, generator=torch.Generator().manual_seed(99))
    labels = torch.arange(classes).repeat_interleave(per_class)
    return CachedFeatures(centres[labels] + noise * torch.randn(len(labels), dim, generator=g), labels)


def _adamw(epochs: int = 20) -> AdamWHead:
    return AdamWHead(LoopSettings(epochs=epochs, weight_decay=1e-4, patience=5), 1e-2, 8,
                     torch.Generator().manual_seed(0))


def _accuracy(head: torch.nn.Module, data: CachedFeatures) -> float:
    with torch.no_grad():
        return (head(data.features).argmax(1) == data.labels).float().mean().item()


def test_cv_folds_are_stratified_and_cover_every_example_once() -> None:
    labels = torch.tensor([0] * 7 + [1] * 5 + [2] * 6)
    folds = cv_folds(labels, seed=3)
    assert len(folds) == 5
    held = torch.cat([h for _, h in folds])
    assert sorted(held.tolist()) == list(range(len(labels)))
    for fit_idx, held_idx in folds:
        assert set(fit_idx.tolist()).isdisjoint(held_idx.tolist())
        assert set(labels[held_idx].tolist()) == {0, 1, 2}  # every class in every fold
    assert [h.tolist() for _, h in folds] == [h.tolist() for _, h in cv_folds(labels, seed=3)]


def test_cv_folds_shrink_to_the_smallest_class_and_keep_singletons_for_fitting() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2])  # class 2 has one example
    folds = cv_folds(labels, seed=0)
    assert len(folds) == 3
    assert all(6 in fit_idx.tolist() for fit_idx, _ in folds)


@pytest.mark.parametrize("solver", ["lbfgs", "adamw"])
def test_tiny_validation_selects_by_cv_and_refits_on_train_plus_val(solver: str, tmp_path) -> None:
    train, val = _blobs(10, seed=1), _blobs(2, seed=2)
    log = MetricsLog(tmp_path / "metrics.jsonl")
    choice, _ = select_and_fit_head(train, val, 3, solver, adamw=_adamw(), metrics_log=log)
    assert choice.selection == "cv-5" and choice.refit and choice.examples == 36
    assert 0.0 <= choice.score <= 1.0
    assert _accuracy(choice.head, _blobs(50, seed=7)) > 0.8
    record = choice.record()
    assert record["solver"] == solver and record["refit"] is True
    if solver == "lbfgs":
        assert record["l2"] in LBFGS_L2_GRID
        assert [r.l2 for r in log.records] == list(LBFGS_L2_GRID)  # one CV record per strength
    else:
        assert record["epochs"] >= 1


def test_a_large_validation_split_selects_on_it_then_refits() -> None:
    train, val = _blobs(30, seed=1), _blobs(CV_BELOW_PER_CLASS, seed=2)
    choice, _ = select_and_fit_head(train, val, 3, "lbfgs", adamw=_adamw())
    assert choice.selection == "val" and choice.refit and choice.examples == 90 + 3 * CV_BELOW_PER_CLASS


@pytest.mark.parametrize("solver", ["lbfgs", "adamw"])
def test_no_refit_fits_on_train_and_selects_on_val(solver: str) -> None:
    train, val = _blobs(10, seed=1), _blobs(2, seed=2)
    choice, _ = select_and_fit_head(train, val, 3, solver, adamw=_adamw(), refit=False)
    assert choice.selection == "val" and not choice.refit and choice.examples == 30


def test_refit_uses_the_validation_examples() -> None:
    # Validation holds the only examples of a shifted cluster: only a refitted head learns it.
    train = _blobs(10, seed=1)
    shifted = CachedFeatures(train.features[:30:10] + 6.0, train.labels[:30:10])  # one per class
    val = CachedFeatures(torch.cat([shifted.features] * 2), torch.cat([shifted.labels] * 2))
    refit, _ = select_and_fit_head(train, val, 3, "lbfgs", adamw=_adamw())
    plain, _ = select_and_fit_head(train, val, 3, "lbfgs", adamw=_adamw(), refit=False)
    assert _accuracy(refit.head, val) >= _accuracy(plain.head, val)
    assert refit.examples == len(train) + len(val)


def test_baseline_score_replaces_the_evaluation_of_the_starting_weights() -> None:
    model = torch.nn.Linear(4, 2)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    loader = [(x, y)]
    settings = LoopSettings(epochs=2, weight_decay=0.0, patience=5)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    result = fit(model, loader, loader, [{"params": list(model.parameters()), "lr": 0.0}], settings,
                 phase=Phase.FINE_TUNE, baseline=True, baseline_score=(1.0, 0.0))
    # No epoch can beat a perfect honest score: the starting weights are kept, as epoch 0.
    assert result.best_epoch == 0
    assert all(torch.equal(start[k], v) for k, v in model.state_dict().items())
