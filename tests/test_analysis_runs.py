"""Sample efficiency and transferability end to end on the tiny BERT, the HTML report for a run,
a comparison and an efficiency folder (self-contained; opened in headless Chromium with no
network request), and the commands' bad-input errors.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

import transferkit as tk
from transferkit.io.records import SkippedInputs, TestMetrics
from transferkit.workflows import efficiency as eff
from transferkit.workflows import layer_transferability, sample_efficiency, write_report

from conftest import run_cli

PNG = b"\x89PNG\r\n\x1a\n"
CHROMIUM = "/usr/bin/chromium"



@pytest.fixture(scope="module")
def reviews(tmp_path_factory) -> Path:
    from conftest import write_sentiment_csv

    return write_sentiment_csv(tmp_path_factory.mktemp("eff") / "reviews.csv", per_class=40)


@pytest.fixture(scope="module")
def efficiency(tmp_path_factory, tiny_bert_dir, reviews):
    short = {m: dataclasses.replace(r, max_epochs=2) for m, r in eff.RECIPES.items()}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(eff, "RECIPES", short)
        return sample_efficiency(f"hf:{tiny_bert_dir}", str(reviews), per_class="2,6", seeds=2,
                                 out=tmp_path_factory.mktemp("eff") / "e", time_budget=300)


def test_efficiency_points_and_summary(efficiency) -> None:
    out = efficiency.out_dir
    points = json.loads((out / "efficiency.json").read_text())
    assert points == efficiency.points and len(points) == 2 * 2 * 3  # sizes x seeds x methods
    assert {(p["per_class"], p["seed"], p["method"]) for p in points} == {
        (n, s, m) for n in (2, 6) for s in (0, 1) for m in eff.METHODS}
    for p in points:
        assert p["status"] == "ok" and 0.0 <= p["accuracy"] <= 1.0 and p["seconds"] >= 0
        assert p["n_train"] == 2 * p["per_class"]
    for p in points:
        if p["method"] != "feature-extraction":  # a budget share and the epochs that fit it
            assert 1 <= p["epochs"] <= p["max_epochs"] <= 2 and p["budget_seconds"] > 0
    summary = json.loads((out / "efficiency_summary.json").read_text())
    assert summary["per_class"] == [2, 6] and summary["seeds"] == [0, 1]
    assert {(m["method"], m["per_class"]) for m in summary["multipliers"]} == {
        (m, n) for m in ("feature-extraction", "fine-tune") for n in (2, 6)}
    assert summary["headline"] and "x the data" in summary["headline"][0]
    assert (out / "efficiency.png").read_bytes()[:8] == PNG
    assert "## Data multiplier" in (out / "efficiency.md").read_text()
    assert not list(out.glob("*.tmp"))


def test_transferability_has_a_point_per_layer_group(tmp_path, tiny_bert_dir, reviews) -> None:
    model = tk.load_model(f"hf:{tiny_bert_dir}", 2)
    groups = [g.name for g in model.layer_groups() if g.name != "head"]
    result = layer_transferability(f"hf:{tiny_bert_dir}", str(reviews), out=tmp_path / "t", per_class=10)
    for init in ("pretrained", "random"):
        assert [p["group"] for p in result.points if p["init"] == init] == groups
    data = json.loads((tmp_path / "t" / "transferability.json").read_text())
    assert data["points"] == result.points and data["groups"] == groups
    assert all(0 <= p["test_accuracy"] <= 1 and p["features"] == 32 for p in result.points)
    assert (tmp_path / "t" / "transferability.png").read_bytes()[:8] == PNG


def test_pool_output_masks_padding() -> None:
    import torch

    from transferkit.workflows.transferability import pool_output

    x = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])  # [B=1, T=3, H=2]; token 3 is padding
    assert pool_output(x, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 2.0]]
    assert pool_output(torch.ones(2, 4, 3, 3)).shape == (2, 4)


# -- the HTML report ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory, tiny_bert_dir, sentiment_csv) -> Path:
    result = tk.compare(f"hf:{tiny_bert_dir}", str(sentiment_csv), strategies=["feature-extraction", "full"],
                        out=tmp_path_factory.mktemp("cmp") / "c", epochs=2)
    return result.out_dir


@pytest.fixture(scope="module")
def run_dir(compare_dir) -> Path:
    run = compare_dir / "runs" / "full"
    path = run / "test_metrics.json"  # a run that skipped bad inputs says so in its test metrics
    metrics = TestMetrics.from_dict(json.loads(path.read_text()))
    metrics.skipped = SkippedInputs(unreadable_images=1, unreadable_image_names=["/data/cat/<broken>.jpg"])
    path.write_text(json.dumps(metrics.to_dict()))
    return run


@pytest.fixture(scope="module")
def reports(run_dir, compare_dir, efficiency) -> dict[str, Path]:
    return {"run": write_report(run_dir), "compare": write_report(compare_dir),
            "efficiency": write_report(efficiency.out_dir)}


def assert_self_contained(text: str) -> None:
    assert not re.search(r"https?://", text)
    assert "<script" not in text.lower() and "@import" not in text and "@font-face" not in text
    assert "<link" not in text.lower() and "url(" not in text
    srcs = re.findall(r'src="([^"]*)"', text)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)


def test_run_report(reports) -> None:
    text = reports["run"].read_text()
    assert_self_contained(text)
    for fragment in ("Test metrics", "Training curves", "Confusion matrix", "Configuration (config.yaml)",
                     "ModelSpec (model_spec.json)", "Warnings", "skipped 1 unreadable"):
        assert fragment in text
    assert "&lt;broken&gt;.jpg" in text and "<broken>" not in text  # escaped


def test_compare_report(reports) -> None:
    text = reports["compare"].read_text()
    assert_self_contained(text)
    assert "Comparison" in text and "Best: " in text and text.count("<details>") == 2


def test_efficiency_report_states_the_multiplier(reports, efficiency) -> None:
    text = reports["efficiency"].read_text()
    assert_self_contained(text)
    assert "Measured data multiplier" in text
    assert efficiency.summary["headline"][0].split(":")[0] in text


def test_report_refuses_other_folders(tmp_path) -> None:
    with pytest.raises(tk.RunFolderError, match="run folder"):
        write_report(tmp_path)


def _browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is not installed (make browser installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    return sync_api


def test_reports_open_offline_in_headless_chromium(reports) -> None:
    sync_api = _browser()
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            for kind, path in reports.items():
                page = browser.new_page()
                requests: list[str] = []
                page.on("request", lambda r: requests.append(r.url))
                page.goto(path.resolve().as_uri(), wait_until="load")
                sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
                assert sizes and all(done and width > 0 for done, width in sizes), (kind, sizes)
                assert page.title().startswith("transferkit report")
                outside = [u for u in requests if not u.startswith(("file:", "data:"))]
                assert not outside, (kind, outside)
                page.close()
        finally:
            browser.close()


# -- the commands ---------------------------------------------------------------------------------
def test_cli_report_and_plot(capsys, run_dir, tmp_path) -> None:
    code, out, _ = run_cli(capsys, "report", run_dir, "--out", tmp_path / "r.html")
    assert code == 0 and (tmp_path / "r.html").is_file() and out.strip().endswith("r.html")
    code, out, _ = run_cli(capsys, "plot", run_dir, "--out", tmp_path / "p.png")
    assert code == 0 and (tmp_path / "p.png").read_bytes()[:8] == PNG


def test_cli_explore_freezing_json(capsys, tmp_path) -> None:
    code, out, _ = run_cli(capsys, "explore", "freezing", "--model", "torchvision:resnet18", "--num-classes", "3",
                           "--out", tmp_path / "f", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["frozen_groups"] for r in rows] == list(range(6))


@pytest.mark.parametrize("args, fragments", [
    (["report", "{tmp}"], ["none of the files", "run folder"]),
    (["plot", "{tmp}"], ["not a run folder"]),
    (["efficiency", "--model", "builtin:efficientnet_lite0", "--data", "builtin:digits", "--per-class", "10,5"],
     ["strictly increasing"]),
    (["efficiency", "--model", "builtin:efficientnet_lite0", "--data", "builtin:digits", "--per-class", "10,500"],
     ["exceeds the data"]),
    (["efficiency", "--model", "nosuch:model", "--data", "builtin:digits", "--per-class", "5"], ["SOURCE:NAME"]),
    (["explore", "freezing", "--model", "nosuch:model"], ["SOURCE:NAME"]),
    (["explore", "lora", "--model", "torchvision:resnet18", "--ranks", "0"], ["ranks"]),
    (["explore", "transferability", "--model", "timm:not_a_model_x", "--data", "builtin:digits"], ["Unknown timm model"]),
])
def test_cli_bad_input_exits_2_without_traceback(capsys, tmp_path, args, fragments) -> None:
    code, _, err = run_cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in args], )
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    for fragment in fragments:
        assert fragment in err
