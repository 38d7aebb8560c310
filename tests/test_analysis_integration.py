"""Integration: layer transferability on the shipped EfficientNet-Lite0 (a small MNIST sample)."""

from __future__ import annotations

import json

import pytest

from transferkit.workflows import layer_transferability
from transferkit.models import load_model


@pytest.mark.integration
def test_transferability_efficientnet_lite0_every_layer_group(tmp_path) -> None:
    groups = [g.name for g in load_model("builtin:efficientnet_lite0", 10).layer_groups() if g.name != "head"]
    result = layer_transferability("builtin:efficientnet_lite0", "builtin:mnist", out=tmp_path / "t",
                                   per_class=5, eval_per_class=5)
    for init in ("pretrained", "random"):
        assert [p["group"] for p in result.points if p["init"] == init] == groups
    data = json.loads((tmp_path / "t" / "transferability.json").read_text())
    assert data["groups"] == groups and len(data["points"]) == 2 * len(groups)
    assert (tmp_path / "t" / "transferability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pre = {p["group"]: p["test_accuracy"] for p in result.points if p["init"] == "pretrained"}
    assert max(pre.values()) > 0.5  # pre-trained features separate digits far above chance (0.1)
    assert [p["features"] for p in result.points if p["init"] == "pretrained"][-1] == 1280
