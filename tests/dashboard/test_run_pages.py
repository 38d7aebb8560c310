"""The pages of one comparison or run: Compare (strategy table, best row, accuracy against time,
a link to each run), Pipeline (frozen / LoRA-adapted / trained groups of real tiny runs, with the
counts `explore freezing` and `lora-savings` give), Export (ONNX from the page: verification and
latency beside eager; TensorRT unavailable here) and the run page itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import transferkit as tk
from transferkit import workflows

from .harness import Client, record, screenshot, wait_for, write_run

STRATEGIES = ("feature-extraction", "full", "lora")




@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, tiny_bert_dir: Path, sentiment_csv: Path) -> dict[str, Path]:
    """A real run per strategy of a 2-layer BERT (hidden 32) on 20 reviews: a few seconds each."""
    base = tmp_path_factory.mktemp("tiny-runs")
    return {s: tk.train(tk.TrainConfig(model=f"hf:{tiny_bert_dir}", data=str(sentiment_csv), strategy=s,
                                       out=str(base / s), epochs=3), progress=False).run_dir
            for s in STRATEGIES}


def _copy(run: Path, roots: Path, name: str | None = None) -> str:
    """Put a trained run inside the dashboard's root; return its folder id."""
    shutil.copytree(run, roots / (name or run.name))
    return f"0/{name or run.name}"


# -- Compare --------------------------------------------------------------------------------------
def _comparison(roots: Path) -> Path:
    folder = roots / "compare-tiny"
    write_run(folder / "runs" / "full", strategy="full", accuracy=0.8,
              records=[record(1, 0.5, seconds=2.0), record(2, 0.7, seconds=2.0), record(3, 0.8, seconds=2.0)])
    write_run(folder / "runs" / "lora", strategy="lora", accuracy=0.85,
              records=[record(1, 0.6, seconds=1.0), record(2, 0.85, seconds=1.5)])
    write_run(folder / "runs" / "feature-extraction", strategy="feature-extraction", accuracy=0.85,
              records=[record(1, 0.8, phase="head-lbfgs", seconds=0.1, lrs={})])
    row = {"status": "ok", "total_params": 1000, "seconds": 7.0, "peak_memory_mb": 500.0, "epochs_to_best": 2}
    rows = [{**row, "strategy": "full", "accuracy": 0.8, "macro_f1": 0.79, "trainable_params": 1000},
            {**row, "strategy": "lora", "accuracy": 0.85, "macro_f1": 0.84, "trainable_params": 50},
            {**row, "strategy": "feature-extraction", "accuracy": 0.85, "macro_f1": 0.84, "trainable_params": 20},
            # compare did not train linear-probe again: the row repeats feature extraction's run
            {**row, "strategy": "linear-probe", "accuracy": 0.85, "macro_f1": 0.84, "trainable_params": 20,
             "seconds": None, "same_run_as": "feature-extraction"},
            {"strategy": "gradual", "status": "skipped (time budget)", "accuracy": None}]
    (folder / "compare.json").write_text(json.dumps(rows))
    (folder / "compare.md").write_text("# Strategy comparison\n\nmodel: `builtin:efficientnet_lite0` · data: "
                                       "`builtin:digits` · seed: 0\n")
    return folder


def test_compare_api_marks_the_best_and_draws_accuracy_against_time(client: Client, roots: Path) -> None:
    _comparison(roots)
    data = client.json("/api/compare/0/compare-tiny")
    rows = {r["strategy"]: r for r in data["rows"]}
    # Ties on accuracy and macro-F1 go to fewer trainable parameters (compare's own rule).
    assert data["best"] == "feature-extraction" and [r["strategy"] for r in data["rows"] if r["best"]] == ["feature-extraction"]
    assert rows["lora"]["run_id"] == "0/compare-tiny/runs/lora" and rows["gradual"]["run_id"] is None
    # a strategy that repeats another's run opens that run, and its curve is drawn once
    assert rows["linear-probe"]["run_id"] == "0/compare-tiny/runs/feature-extraction"
    curves = {c["strategy"]: c for c in data["curves"]}
    assert set(curves) == {"full", "lora", "feature-extraction"}
    assert curves["full"]["seconds"] == [2.0, 4.0, 6.0] and curves["full"]["val_accuracy"] == [0.5, 0.7, 0.8]
    assert curves["lora"]["seconds"] == [1.0, 2.5] and "data: builtin:digits" in data["settings"]
    assert client.request("/api/compare/0/compare-tiny/runs/full")[0] == 404  # a run, not a comparison
    assert client.request("/compare/0/nowhere")[0] == 404


def test_compare_page(browser, roots: Path) -> None:
    _comparison(roots)
    page = browser.page
    page.goto(f"{browser.origin}/compare/0/compare-tiny")
    page.wait_for_selector("#strategy-table tr.best")
    assert page.get_attribute("#strategy-table tr.best", "data-strategy") == "feature-extraction"
    assert page.locator("#strategy-table tr.best td").first.evaluate("e => getComputedStyle(e).fontWeight") == "700"
    page.wait_for_selector("#chart-compare canvas")
    assert page.get_attribute("#chart-compare", "data-series") == "3"
    status = page.locator("#strategy-table tr[data-strategy=linear-probe] td").nth(2).inner_text()
    assert status == "ok (same run as feature-extraction)"
    screenshot(page, "compare")
    page.click("#strategy-table tr[data-strategy=lora] a.open-run")
    page.wait_for_url(f"{browser.origin}/run/0/compare-tiny/runs/lora")
    page.wait_for_selector("#run-status.finished")


# -- Pipeline -------------------------------------------------------------------------------------
def test_pipeline_shows_what_each_strategy_adapted(client: Client, roots: Path, tiny_runs: dict[str, Path]) -> None:
    ids = {s: _copy(run, roots, s) for s, run in tiny_runs.items()}
    sizes = {}
    for row in workflows.freezing_counts(tk.load_run(tiny_runs["full"]).model):  # what `explore freezing` prints
        sizes[row["trainable"][0]] = row["trainable_params"]
    sizes = {g: n - sizes.get(next_g, 0) for (g, n), next_g in zip(sizes.items(), list(sizes)[1:] + [None])}
    status = {}
    for strategy, folder_id in ids.items():
        p = client.json(f"/api/pipeline/{folder_id}")
        assert p["model_error"] is None and p["strategy"] == strategy
        status[strategy] = {g["name"]: g["status"] for g in p["backbone"]} | {"head": p["head"]["status"]}
        assert {g["name"]: g["params"] for g in p["backbone"]} | {"head": p["head"]["params"]} == sizes
        trained = sum(g["trainable_params"] for g in p["backbone"]) + p["head"]["trainable_params"]
        assert trained == p["trainable_params"], strategy  # the run's own count of what trained
    assert status["feature-extraction"] == {"stem": "frozen", "blocks.0": "frozen", "blocks.1": "frozen", "head": "trained"}
    assert status["full"] == {"stem": "trained", "blocks.0": "trained", "blocks.1": "trained", "head": "trained"}
    assert status["lora"] == {"stem": "frozen", "blocks.0": "lora", "blocks.1": "lora", "head": "trained"}
    lora = client.json(f"/api/pipeline/{ids['lora']}")
    # Rank 8 on query and value of each block (hidden 32): 8 (32 + 32) per layer, as lora-savings counts.
    assert [(g["lora_layers"], g["trainable_params"]) for g in lora["backbone"][1:]] == [(2, 1024), (2, 1024)]
    steps = {s["step"]: s["value"] for s in lora["preprocessing"]}
    assert steps["max length"] == "64 tokens" and steps["pooling"] == "mean"
    assert any(e["format"].startswith("LoRA adapter") for e in lora["exports"])


def test_pipeline_of_a_run_without_weights_yet(client: Client, roots: Path) -> None:
    """A run still in its first epoch has no weights: the stages come from its spec and records."""
    write_run(roots / "early", accuracy=None, records=[record(1, 0.5, lrs={"head": 1e-3, "layer4": 1e-4})])
    spec = json.loads((roots / "early" / "model_spec.json").read_text())
    spec.update(layer_groups=["stem", "layer3", "layer4", "head"], num_features=512, num_classes=3,
                image={"resize_size": 256, "crop_size": 224, "mean": [0.485, 0.456, 0.406],
                       "std": [0.229, 0.224, 0.225], "interpolation": "bilinear"})
    (roots / "early" / "model_spec.json").write_text(json.dumps(spec))
    p = client.json("/api/pipeline/0/early")
    assert p["model_error"] and {g["name"]: g["status"] for g in p["backbone"]} == {
        "stem": "frozen", "layer3": "frozen", "layer4": "trained"}
    steps = {s["step"]: s["value"] for s in p["preprocessing"]}
    assert steps == {"resize": "256 px (bilinear)", "center crop": "224 x 224 px",
                     "normalize": "mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)"}


def test_pipeline_page(browser, roots: Path, tiny_runs: dict[str, Path]) -> None:
    folder_id = _copy(tiny_runs["lora"], roots, "lora-run")
    page = browser.page
    page.goto(f"{browser.origin}/pipeline/{folder_id}")
    page.wait_for_selector("#stage-backbone [data-group]")
    shown = {e.get_attribute("data-group"): e.get_attribute("data-status")
             for e in page.query_selector_all("#pipeline [data-group]")}
    assert shown == {"stem": "frozen", "blocks.0": "lora", "blocks.1": "lora", "head": "trained"}
    assert "max length: 64 tokens" in page.inner_text("#stage-preprocessing")
    assert "1,024 LoRA params" in page.inner_text("[data-group='blocks.0']")
    screenshot(page, "pipeline")


# -- Export ---------------------------------------------------------------------------------------
def test_export_refuses_what_it_cannot_do(client: Client, roots: Path) -> None:
    write_run(roots / "running", accuracy=None)
    write_run(roots / "done")
    status, body, _ = client.request("/api/export/0/running", method="POST", body={"format": "onnx"})
    assert status == 409 and b"finished run" in body
    status, body, _ = client.request("/api/export/0/done", method="POST", body={"format": "nope"})
    assert status == 400 and b"onnx" in body
    if tk.EXPORT_FORMATS.names().count("tensorrt"):
        status, body, _ = client.request("/api/export/0/done", method="POST", body={"format": "tensorrt"})
        formats = {f["name"]: f for f in client.json("/api/export/0/done")["formats"]}
        if not formats["tensorrt"]["available"]:
            assert status == 400 and b"not available on this machine" in body
    assert client.request("/api/export/0/done", method="POST", body=["onnx"])[0] == 400


def test_export_torchscript_through_the_api(client: Client, roots: Path, tiny_runs: dict[str, Path]) -> None:
    folder_id = _copy(tiny_runs["lora"], roots, "lora-run")
    url = f"/api/export/{folder_id}"
    status, body, _ = client.request(url, method="POST", body={"format": "torchscript"})
    assert status == 202, body
    job_id = json.loads(body)["job"]
    status, body, _ = client.request(url, method="POST", body={"format": "onnx"})  # one at a time per run
    assert status == 409 and b"already queued or running" in body
    job = {j["id"]: j for j in client.json("/api/jobs")["jobs"]}[job_id]  # a job of the queue like a run
    assert job["command"] == "export" and job["argv"][1:] == ["--format=torchscript", "--force", "--latency"]
    done = wait_for(lambda: (d := client.json(url))["task"]["status"] not in ("queued", "running") and d,
                    timeout=90, what="the export")
    assert done["task"]["status"] == "finished", done["task"]
    formats = {f["name"]: f for f in done["formats"]}
    assert formats["torchscript"]["exported"] == "model.pt" and formats["torchscript"]["verification"]["n"] > 0
    assert formats["torchscript"]["verification"]["top1_agreement"] == 1.0
    assert [r["name"] for r in done["latency"]["rows"]] == ["eager", "torchscript"] and not done["latency_stale"]


def test_export_onnx_from_the_page(browser, client: Client, roots: Path, tiny_runs: dict[str, Path]) -> None:
    folder_id = _copy(tiny_runs["full"], roots, "full-run")
    page = browser.page
    page.goto(f"{browser.origin}/export/{folder_id}")
    page.wait_for_selector("#format-table")
    trt = client.json(f"/api/export/{folder_id}")["formats"][-1]
    if trt["name"] == "tensorrt" and not trt["available"]:
        assert "not available on this machine" in page.inner_text("#format-table tr[data-format=tensorrt]")
        assert "torch-tensorrt" in page.inner_text("p.reason[data-format=tensorrt]")
        assert page.is_disabled("#format-table tr[data-format=tensorrt] button")
    page.click("#format-table tr[data-format=onnx] button")
    page.wait_for_selector("#task[data-status=finished]", timeout=90_000)
    page.wait_for_selector("#latency-table tr[data-model=onnx]")
    onnx_row = page.inner_text("#format-table tr[data-format=onnx]")
    assert "model.onnx" in onnx_row and "top-1 agreement 100.0%" in onnx_row and "max |logit diff|" in onnx_row
    latency = client.json(f"/api/export/{folder_id}")["latency"]
    assert [(r["name"], sorted(r["ms"])) for r in latency["rows"]] == [("eager", ["1", "32"]), ("onnx", ["1", "32"])]
    assert all(ms > 0 for r in latency["rows"] for ms in r["ms"].values())
    assert (roots / "full-run" / "export" / "latency.json").is_file()
    screenshot(page, "export")
    page.reload()  # kept in the run folder: shown again after a reload
    page.wait_for_selector("#latency-table tr[data-model=onnx]")
    assert "top-1 agreement" in page.inner_text("#format-table tr[data-format=onnx]")
    pipeline = client.json(f"/api/pipeline/{folder_id}")
    assert [e["file"] for e in pipeline["exports"]] == ["export/model.onnx"]


# -- The run page ---------------------------------------------------------------------------------
def _eventful_run(roots: Path) -> Path:
    """A finished run with a linear-probe phase, an unfreezing step, the overfitting warning."""
    def rec(phase: str, epoch: int, val: float, lrs: dict[str, float], *events: tuple[str, str, list[str]]) -> tk.EpochRecord:
        base = record(epoch, val, phase=phase, lrs=lrs).to_dict()
        base["events"] = [{"kind": k, "message": m, "groups": g} for k, m, g in events]
        return tk.EpochRecord.from_dict(base)

    records = [rec("linear-probe", 1, 0.55, {"head": 1e-2}), rec("linear-probe", 2, 0.62, {"head": 1e-2}),
               rec("fine-tune", 1, 0.70, {"head": 1e-3, "layer4": 1e-4}),
               rec("fine-tune", 2, 0.78, {"head": 8e-4, "layer4": 8e-5, "layer3": 8e-5},
                   ("unfrozen", "unfrozen: layer3", ["layer3"])),
               rec("fine-tune", 3, 0.76, {"head": 5e-4, "layer4": 5e-5, "layer3": 5e-5},
                   ("overfitting", "overfitting: train accuracy 0.98 is 0.22 above validation", []))]
    run = write_run(roots / "eventful", strategy="lp-ft", records=records, accuracy=0.77, classes=("cat", "dog", "fox"))
    (run / "report.html").write_text("<html><body>report</body></html>")
    return run


def test_run_page_of_a_finished_run(browser, roots: Path) -> None:
    _eventful_run(roots)
    page = browser.page
    page.goto(f"{browser.origin}/run/0/eventful")
    page.wait_for_selector("#results:not([hidden])")
    events = page.inner_text("#events")
    assert "phase: fine-tune" in events and "unfrozen: layer3" in events
    assert "0.22 above validation" in page.inner_text("#events .event.warn.overfitting")  # the warning stands out
    for chart in ("#chart-loss", "#chart-accuracy", "#chart-lr"):
        assert page.query_selector(f"{chart} canvas"), chart
    assert page.get_attribute("#chart-accuracy", "data-val-points") == "5"
    assert "layer3" in page.inner_text("#chart-lr")  # a learning-rate line per layer group
    assert "0.7700" in page.inner_text("#metrics") and "0.7500" in page.inner_text("#metrics")  # balanced accuracy
    confusion = page.inner_text("#confusion")
    assert "cat" in confusion and "fox" in confusion
    assert "dog" in page.inner_text("#recall")
    assert "strategy: lp-ft" in page.inner_text("#config") and "efficientnet_lite0" in page.inner_text("#spec")
    assert page.is_visible("#link-report") and page.is_visible("#link-export") and page.is_visible("#link-pipeline")
    screenshot(page, "run")
    page.click("#link-report")
    page.wait_for_url("**/file/0/eventful?name=report.html")


def test_latency_keeps_a_file_it_cannot_run_here(tmp_path: Path, tiny_runs: dict[str, Path]) -> None:
    """A TensorRT file made on a GPU machine is listed with the reason, the others still timed."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine can run TensorRT files")
    run = tmp_path / "run"
    shutil.copytree(tiny_runs["full"], run)
    tk.export_run(run, "torchscript")
    export = run / "export"
    shutil.copy(export / "model.pt", export / "model.trt.ts")
    sidecar = json.loads((export / "model.pt.json").read_text())
    (export / "model.trt.ts.json").write_text(json.dumps({**sidecar, "format": "tensorrt", "file_sha256": None}))
    report = tk.measure_latency(run, batch_sizes=[2], repeats=3)
    rows = {r.name: r for r in report.rows}
    assert set(rows) == {"eager", "torchscript", "tensorrt"} and rows["torchscript"].ms["2"] > 0
    assert rows["tensorrt"].ms == {} and "CUDA" in rows["tensorrt"].error and rows["tensorrt"].verification
    assert tk.read_latency(run).to_dict() == report.to_dict()
