"""The explorers' pages in Debian's Chromium: the LoRA rank slider and the freezing slider read the
same numbers as the CLI's --json, layer transferability and transfer efficiency studies are drawn
from their JSON files, and the "new study" form posts a job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from transferkit import workflows
from transferkit.workflows.efficiency_report import write_outputs
from transferkit.workflows.multiplier import headline

from .harness import screenshot, wait_for_data, write_run


def _url(browser: Any, path: str) -> str:
    return browser.origin + path


def _cli_json(capsys: Any, *args: object) -> Any:
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    return json.loads(out)


def _value(page: Any, selector: str) -> float:
    return float(page.get_attribute(selector, "data-value"))


# -- LoRA -----------------------------------------------------------------------------------------
def _choose_lora(page: Any, model: str, targets: str) -> None:
    page.fill("#model", model)
    page.fill("#targets", targets)
    page.click("#count")
    page.wait_for_function(f"() => document.getElementById('main')?.dataset.state === 'ready' && "
                           f"document.getElementById('what')?.textContent.startsWith({json.dumps(model)})",
                           timeout=20000)


def _check_ranks(page: Any, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        page.fill("#rank", str(row["rank"]))  # an input[type=range]: the page recounts on "input"
        assert page.inner_text("#rank-value") == str(row["rank"])
        assert _value(page, "#trainable") == row["trainable_params"], row
        assert _value(page, "#lora-params") == row["lora_params"]
        assert _value(page, "#head-params") == row["head_params"]
        assert _value(page, "#share") == pytest.approx(row["share"])
        assert _value(page, "#reduction") == pytest.approx(row["full_params"] / row["trainable_params"])
        assert page.inner_text("#trainable") == f"{row['trainable_params']:,}"
        assert page.locator("#layers tbody tr").count() == row["layers"]


def test_lora_slider_reads_the_cli_numbers(browser, capsys, tmp_path: Path) -> None:
    ranks = "1,8,64,256"
    resnet = _cli_json(capsys, "lora-savings", "--model", "torchvision:resnet18", "--targets", "layer4",
                       "--ranks", ranks, "--json")
    minilm = _cli_json(capsys, "lora-savings", "--model", "builtin:minilm", "--ranks", "2,8", "--json")
    page = browser.page
    page.goto(_url(browser, "/lora"))
    assert page.inner_text("#example-lora") == "12,288" and page.inner_text("#example-full") == "589,824"
    assert page.inner_text("#example-ratio") == "48x"
    _choose_lora(page, "torchvision:resnet18", "layer4")
    _check_ranks(page, resnet)
    page.fill("#rank", "8")
    screenshot(page, "lora")
    _choose_lora(page, "builtin:minilm", "default")  # the family default: query,value
    _check_ranks(page, [r for r in minilm if r["target_set"] == "default"])


def test_lora_api_counts_and_errors(client) -> None:
    answer = client.json("/api/lora?model=torchvision:resnet18&targets=layer4&num_classes=3")
    assert answer["head_params"] == 512 * 3 + 3 and answer["rank_range"] == [1, 256]
    assert answer["layers"] and all(".layer4." in layer["name"] for layer in answer["layers"])
    conv = answer["layers"][0]
    assert conv["shape"] == [512, 256, 3, 3] and (conv["d"], conv["k"]) == (512, 256 * 9)
    for query, fragment in (("model=nosuch:model", "SOURCE:NAME"), ("model=torchvision:resnet18&targets=x", "'x'"),
                            ("model=torchvision:resnet18&num_classes=0", "num_classes"), ("", "model")):
        status, body, _ = client.request("/api/lora?" + query)
        assert status == 400 and fragment in json.loads(body)["error"], (query, body)


def test_lora_study_preselects_its_model(browser, roots: Path) -> None:
    workflows.explore_lora("torchvision:resnet18", ranks=[4], targets=["layer3,layer4"], out=roots / "lora-r18")
    page = browser.page
    page.goto(_url(browser, "/lora?study=0/lora-r18"))
    wait_for_data(page, "main", "state", "ready", timeout_ms=20000)
    assert page.input_value("#model") == "torchvision:resnet18"
    assert page.input_value("#targets") == "layer3,layer4"
    assert "lora-r18" in page.inner_text("#study-note")


# -- Freezing -------------------------------------------------------------------------------------
def _freezing_study(roots: Path, counts: list[dict[str, Any]]) -> None:
    """A freezing study of resnet18 on digits as explore_freezing writes it, each depth with a run."""
    study = roots / "freezing-r18"
    rows = []
    for r in counts:
        k = r["frozen_groups"]
        run = write_run(study / "runs" / f"frozen-{k}", model="torchvision:resnet18", accuracy=0.5 + 0.05 * k)
        rows.append({**r, "status": "ok", "strategy": "last-n", "accuracy": 0.5 + 0.05 * k, "macro_f1": 0.5,
                     "seconds": 3.0, "run_dir": str(run)})
    (study / "freezing.json").write_text(json.dumps({"model": "torchvision:resnet18", "data": "builtin:digits",
                                                     "num_classes": 10, "rows": rows}))


def test_freezing_slider_reads_the_cli_numbers(browser, capsys, roots: Path, tmp_path: Path) -> None:
    rows = _cli_json(capsys, "explore", "freezing", "--model", "torchvision:resnet18", "--out", tmp_path / "f",
                     "--json")
    _freezing_study(roots, rows)
    page = browser.page
    page.goto(_url(browser, "/freezing"))
    wait_for_data(page, "main", "state", "ready", timeout_ms=20000)
    assert page.get_attribute("#depth", "max") == str(len(rows) - 1)
    for row in reversed(rows):
        k = row["frozen_groups"]
        page.fill("#depth", str(k))
        assert _value(page, "#trainable") == row["trainable_params"], row
        assert _value(page, "#share") == pytest.approx(row["share"])
        assert page.locator("#groups .stage.frozen").count() == k
        assert _value(page, "#accuracy") == pytest.approx(0.5 + 0.05 * k)
        assert page.locator("#depths tr.best td").first.inner_text() == str(k)
    assert page.get_attribute("#accuracy a", "href") == "/run/0/freezing-r18/runs/frozen-0"  # the last one shown
    assert page.locator("#chart-accuracy canvas").count() >= 1
    page.fill("#depth", "3")
    screenshot(page, "freezing")


def test_freezing_study_preselects_model_and_head(client, roots: Path) -> None:
    (roots / "fr").mkdir()
    (roots / "fr" / "freezing.json").write_text(json.dumps({"model": "builtin:efficientnet_lite0", "data": None,
                                                            "num_classes": 4, "rows": []}))
    assert client.json("/api/freezing/study/0/fr") == {"id": "0/fr", "model": "builtin:efficientnet_lite0",
                                                       "data": None, "num_classes": 4}
    answer = client.json("/api/freezing?model=builtin:efficientnet_lite0&num_classes=4")
    assert answer["studies"] == []  # a study without accuracies has nothing to show
    assert client.request("/api/freezing?model=torchvision:resnet18&num_classes=x")[0] == 400


# -- Transferability ------------------------------------------------------------------------------
def _transferability_study(folder: Path) -> None:
    groups = ["stem", "layer1", "layer2", "layer3", "layer4"]
    pre = [0.3, 0.5, 0.7, 0.85, 0.8]
    rnd = [0.25, 0.3, 0.3, 0.28, 0.2]
    points = [{"init": init, "depth": d + 1, "group": g, "features": 64 * (d + 1), "val_accuracy": acc[d],
               "test_accuracy": acc[d], "l2": 0.01} for init, acc in (("pretrained", pre), ("random", rnd))
              for d, g in enumerate(groups)]
    from transferkit.workflows.transferability import summarize

    summary = summarize(points, 0.1)
    summary.update(model="torchvision:resnet18", data="builtin:digits", per_class=20, n_train=200, n_val=100,
                   n_test=100, groups=groups, seconds=12.3)
    folder.mkdir(parents=True)
    (folder / "transferability.json").write_text(json.dumps({**summary, "points": points}))


def test_transferability_pages(browser, client, roots: Path) -> None:
    _transferability_study(roots / "transferability-r18")
    page = browser.page
    page.goto(_url(browser, "/transferability"))
    page.click("text=transferability-r18")
    wait_for_data(page, "chart", "points", "10")
    assert page.locator("#chart canvas").count() == 1
    assert page.locator("#points tbody tr").count() == 10
    assert "peaks after layer3" in page.inner_text("#summary-text")
    assert "layer3 (depth 4, 0.8500)" in page.inner_text("#overview")
    screenshot(page, "transferability")
    assert client.request("/api/transferability/0/nowhere")[0] == 404
    assert client.request("/api/transferability/0/..%2F..")[0] == 404


# -- Transfer efficiency --------------------------------------------------------------------------
def _efficiency_points(run_dir: Path | None = None) -> list[dict[str, Any]]:
    accuracy = {"feature-extraction": (0.7, 0.85), "fine-tune": (0.75, 0.9), "scratch": (0.3, 0.55)}
    points = []
    for seed in (0, 1):
        for i, size in enumerate((5, 20)):
            for method, accs in accuracy.items():
                points.append({"per_class": size, "seed": seed, "method": method, "n_train": 10 * size,
                               "status": "ok", "accuracy": round(accs[i] + 0.04 * seed, 4),
                               "val_accuracy": accs[i], "seconds": 2.5})
    if run_dir is not None:
        points[-1]["run_dir"] = str(run_dir)
    return points


def _efficiency_study(folder: Path, run_dir: Path) -> list[dict[str, Any]]:
    folder.mkdir(parents=True)
    points = _efficiency_points(run_dir)
    multipliers = workflows.data_multipliers(points)
    summary = {"model": "builtin:efficientnet_lite0", "data": "builtin:digits", "per_class": [5, 20], "seeds": [0, 1],
               "methods": list(workflows.METHODS), "classes": 10, "n_test": 360, "image_size": 64, "seconds": 80.0,
               "multipliers": multipliers, "headline": headline(multipliers)}
    write_outputs(folder, points, summary)
    return points


def test_efficiency_pages(browser, client, roots: Path) -> None:
    run = write_run(roots / "eff-run", accuracy=0.57)
    _efficiency_study(roots / "efficiency-lite0", run)
    page = browser.page
    page.goto(_url(browser, "/efficiency"))
    page.click("text=efficiency-lite0")
    wait_for_data(page, "chart", "sizes", "5,20")
    assert page.locator("#chart canvas").count() == 1
    assert "5/class: transfer (fine-tune" in page.inner_text("#headline")
    assert page.locator("#points tbody tr").count() == 12
    box = page.locator("#chart .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)  # the cursor snaps to 20/class
    wait_for_data(page, "hover", "perClass", "20")
    hover = page.inner_text("#hover")
    assert "scratch · 20/class · seed 1 · accuracy 0.5900" in hover and hover.count("seed") == 6
    assert page.get_attribute("#hover a", "href") == "/run/0/eff-run"
    screenshot(page, "efficiency")


def test_a_stopped_study_gets_its_multipliers_from_the_points(client, roots: Path) -> None:
    (roots / "stopped").mkdir()
    points = _efficiency_points()[:9]  # killed during the second size
    (roots / "stopped" / "efficiency.json").write_text(json.dumps(points))
    answer = client.json("/api/efficiency/0/stopped")
    assert not answer["finished"] and answer["multipliers"] == workflows.data_multipliers(points)
    assert answer["curves"]["scratch"][0]["min"] == 0.3 and answer["curves"]["scratch"][0]["max"] == 0.34
    assert [s["id"] for s in client.json("/api/efficiency")["studies"]] == ["0/stopped"]
    assert client.request("/api/efficiency/0/missing")[0] == 404


def test_new_study_form_shows_the_jobs_error(browser, client) -> None:
    status, _, _ = client.request("/api/jobs", method="POST", body={})
    if status in (404, 405):
        pytest.skip("POST /api/jobs is not there yet")
    page = browser.page
    page.goto(_url(browser, "/efficiency"))
    page.fill("#model", "builtin:efficientnet_lite0")
    page.fill("#data", "/no/such/folder")
    page.click("#start")
    page.wait_for_selector("#form-error:not([hidden])", timeout=60000)  # the job's check takes seconds
    # the refused POST is logged by the browser as a failed resource: expected here
    browser.console_errors[:] = [e for e in browser.console_errors if "status of 4" not in e]
    assert "/no/such/folder" in page.inner_text("#form-error")
    assert page.locator("#queued").is_hidden()
