"""WiSE-FT for LP-FT: the kept weights are the probe's plus ``wise_alpha`` of fine-tuning's change."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import transferkit as tk
from transferkit.errors import ConfigError
from transferkit.io import runfolder as rf
from transferkit.models import load_model
from transferkit.train.wise import float_state, interpolate_towards


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def _shifted(model: nn.Module, by: float) -> None:
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(by)


@pytest.mark.parametrize("alpha, expected_shift", [(1.0, 2.0), (0.0, 0.0), (0.25, 0.5), (0.75, 1.5)])
def test_interpolation_keeps_alpha_of_the_change(alpha: float, expected_shift: float) -> None:
    model = _net()
    start = float_state(model)
    _shifted(model, 2.0)  # fine-tuning moved every float entry (BatchNorm statistics too) by 2
    model[1].num_batches_tracked.fill_(7)
    interpolate_towards(model, start, alpha)
    for name, value in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            assert value.item() == 7  # a counter is not a weight: it keeps its current value
        else:
            torch.testing.assert_close(value, start[name] + expected_shift)


def test_snapshot_is_a_copy() -> None:
    model = _net()
    start = float_state(model)
    _shifted(model, 1.0)
    assert not torch.equal(start["0.weight"], model.state_dict()["0.weight"])
    assert "1.num_batches_tracked" not in start


def test_tied_weights_move_once() -> None:
    model = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False))
    model[1].weight = model[0].weight  # one tensor under two names
    start = float_state(model)
    _shifted(model, 2.0)  # the state_dict lists it twice: shifted by 4
    moved = model[0].weight.detach().clone()
    interpolate_towards(model, start, 0.5)
    torch.testing.assert_close(model[0].weight, (start["0.weight"] + moved) / 2)


def test_another_models_weights_are_refused() -> None:
    other = float_state(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="another model's"):
        interpolate_towards(_net(), other, 0.5)


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_outside_the_unit_interval_is_a_config_error(alpha: float) -> None:
    with pytest.raises(ConfigError, match="wise_alpha: must be between 0.0 and 1.0"):
        tk.TrainConfig(model="m", data="d", strategy="lp-ft", wise_alpha=alpha)


def _lp_ft(tiny_bert_dir, data, out, alpha: float) -> tk.RunResult:
    return tk.train(tk.TrainConfig(model=f"hf:{tiny_bert_dir}", data=str(data), strategy="lp-ft", lr=3e-3,
                                   epochs=2, batch_size=8, seed=0, out=str(out), wise_alpha=alpha))


def test_lp_ft_run_keeps_alpha_of_the_way_from_the_probe(tmp_path, tiny_bert_dir, sentiment_csv) -> None:
    """Three runs, same seed: alpha 0 is the probe on the pre-trained backbone, alpha 1 the
    fine-tuned weights, alpha 0.5 exactly between them; the record says which alpha was used."""
    runs = {a: _lp_ft(tiny_bert_dir, sentiment_csv, tmp_path / str(a), a) for a in (0.0, 0.5, 1.0)}
    weights = {a: load_file(str(r.run_dir / rf.WEIGHTS)) for a, r in runs.items()}
    backbone = [k for k in weights[1.0] if not k.startswith("head.") and weights[1.0][k].is_floating_point()]
    assert any(not torch.equal(weights[0.0][k], weights[1.0][k]) for k in backbone)  # fine-tuning moved it
    pretrained = load_model(f"hf:{tiny_bert_dir}", 2).state_dict()
    for k in backbone:
        torch.testing.assert_close(weights[0.0][k], pretrained[k])
    for k, v in weights[1.0].items():
        if v.is_floating_point():
            torch.testing.assert_close(weights[0.5][k], (weights[0.0][k] + v) / 2, atol=1e-6, rtol=1e-5)
    assert runs[0.5].test_metrics["wise_alpha"] == 0.5
    assert runs[1.0].test_metrics["wise_alpha"] is None  # the fine-tuned weights, as they are
    assert not (runs[0.5].run_dir / "checkpoint").exists()  # the probe's copy went with the checkpoint
