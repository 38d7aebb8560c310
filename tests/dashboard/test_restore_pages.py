"""The restoration pages: a real `restore --compare-priors` folder and a real (tiny) `denoiser
train` run, as the catalog lists them (kinds, status, headline figures), as /api/restore answers
for them, and as Debian's Chromium shows them (table sorted by PSNR with the best row bold, the
side-by-side figure and every image loaded, the denoiser's record and loss curve)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit import restore, workflows
from transferkit.io import runfolder

from .harness import Client, screenshot, write_run

PRIORS = ["builtin:drunet", "tv", "nlm"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A comparison of three priors on a 64x64 colour crop of scikit-image's astronaut (held out from
    the built-in denoiser's pre-training; sigma 25/255) and a 3-step denoiser run on two 40x40
    images: the folders the commands write, made by the same functions."""
    import skimage.data

    base = tmp_path_factory.mktemp("restore-made")
    rng = np.random.default_rng(0)
    Image.fromarray(skimage.data.astronaut()[80:144, 190:254]).save(base / "clean.png")
    comparison = restore.compare_priors(base / "clean.png", restore.Degradation("denoise", noise_sigma=25 / 255),
                                        PRIORS, out=base / "cmp")
    images = base / "images"
    images.mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(images / f"{i}.png")
    run = restore.train_denoiser(restore.DenoiserTrainConfig(images=images, out=base / "den", steps=3, patch=16,
                                                             batch_size=2))
    return {"compare": comparison.folder, "denoiser": run.folder}


def _put(made: dict[str, Path], roots: Path) -> None:
    shutil.copytree(made["compare"], roots / "restore-compare-clean")
    shutil.copytree(made["denoiser"], roots / "denoiser-drunet-full")


def _record(folder: Path) -> dict:
    return json.loads((folder / "restore_comparison.json").read_text())


# -- The catalog ----------------------------------------------------------------------------------
def test_catalog_lists_comparisons_and_denoiser_runs(made: dict[str, Path], roots: Path) -> None:
    _put(made, roots)
    write_run(roots / "a-run")
    partial = roots / "denoiser-partial"  # a denoiser run before its record: train.log and metrics.jsonl only
    partial.mkdir()
    for name in ("train.log", "metrics.jsonl"):
        lines = (made["denoiser"] / name).read_text().splitlines(keepends=True)
        (partial / name).write_text("".join(lines[:2]))
    with runfolder.hold_running_lock(partial):  # what train_denoiser holds while it trains
        found = {f.path.name: f for f in workflows.find_folders([roots])}
    assert set(found) == {"restore-compare-clean", "denoiser-drunet-full", "denoiser-partial", "a-run"}
    assert found["a-run"].kind == "run" and found["a-run"].status == "finished"

    cmp = found["restore-compare-clean"]
    rows = sorted(_record(made["compare"])["priors"], key=lambda r: -r["psnr"])
    assert cmp.kinds == ("restore-compare",) and cmp.status == "finished" and cmp.data == "clean.png"
    assert cmp.model == rows[0]["prior"] and cmp.strategy == f"3 priors, best {rows[0]['prior']} ({rows[0]['psnr']:.2f} dB)"
    assert cmp.seconds == pytest.approx(sum(r["seconds"] for r in rows))

    den = found["denoiser-drunet-full"]
    record = json.loads((made["denoiser"] / "denoiser.json").read_text())["record"]
    assert den.kinds == ("denoiser",) and den.status == "finished"
    assert (den.model, den.strategy, den.seconds) == ("builtin:drunet", "full", record["seconds"])
    assert den.trainable_params == record["trainable_params"] > 0 and den.data.endswith("images")

    # Running while a process holds the lock on train.log, as runs; then interrupted, or failed
    # with the error once failure.json says why.
    assert found["denoiser-partial"].kinds == ("denoiser",) and found["denoiser-partial"].status == "running"
    assert workflows.summarize_folder(partial).status == "interrupted"
    (partial / "failure.json").write_text(json.dumps({"error": "The training loss became nan at step 2.",
                                                      "type": "TrainingDivergedError"}))
    failed = workflows.summarize_folder(partial)
    assert failed.status == "failed" and failed.error == "The training loss became nan at step 2."
    (roots / "denoiser-drunet-full" / "denoiser.safetensors").unlink()  # a record without its weights
    assert workflows.summarize_folder(roots / "denoiser-drunet-full").status == "interrupted"
    # The HTML report's kinds are unchanged: it does not cover these folders.
    assert workflows.folder_kinds(roots / "restore-compare-clean") == [] == workflows.folder_kinds(partial)


# -- The API --------------------------------------------------------------------------------------
def test_restore_api_of_a_comparison(client: Client, made: dict[str, Path], roots: Path) -> None:
    _put(made, roots)
    data = client.json("/api/restore/0/restore-compare-clean")
    psnrs = [r["psnr"] for r in data["priors"]]
    assert data["kind"] == "restore-compare" and data["status"] == "finished"
    assert [r["prior"] for r in data["priors"]] != [] and psnrs == sorted(psnrs, reverse=True) and len(psnrs) == 3
    assert [r["best"] for r in data["priors"]] == [True, False, False] and data["best"] == data["priors"][0]["prior"]
    problem = data["problem"]
    assert problem["task"] == "denoise" and problem["psnr_input"] < psnrs[0] and problem["solver"] == "hqs"
    for name in [data["figure"], data["clean"], data["degraded"], *(r["image"] for r in data["priors"])]:
        status, body, headers = client.request(f"/file/0/restore-compare-clean?name={name}")
        assert status == 200 and headers["content-type"] == "image/png" and body[:4] == b"\x89PNG", name
    assert client.request(f"/file/0/restore-compare-clean?name={data['table']}")[0] == 200
    status, body, _ = client.request("/restore/0/restore-compare-clean")
    assert status == 200 and b"/static/restore.js" in body and b"Prior comparison" in body


def test_restore_api_of_a_denoiser_run(client: Client, made: dict[str, Path], roots: Path) -> None:
    _put(made, roots)
    data = client.json("/api/restore/0/denoiser-drunet-full")
    record = data["record"]
    assert data["kind"] == "denoiser" and data["status"] == "finished" and data["weights"] == "denoiser.safetensors"
    assert (record["from"], record["strategy"], record["steps"]) == ("builtin:drunet", "full", 3)
    assert set(record["psnr_before"]) == set(record["psnr_after"]) == {"15", "25", "50"}
    assert "training images" in record["psnr_note"] and data["config"]["patch"] == 16
    assert [s["step"] for s in data["steps"]] == [1, 2, 3] and all(s["l1"] > 0 for s in data["steps"])
    runs = {r["name"]: r for r in client.json("/api/runs")["folders"]}
    assert runs["denoiser-drunet-full"]["kind"] == "denoiser" and runs["restore-compare-clean"]["kind"] == "restore-compare"


def test_restore_api_refuses_other_folders(client: Client, roots: Path) -> None:
    write_run(roots / "a-run")
    (roots / "broken").mkdir()
    (roots / "broken" / "restore_comparison.json").write_text("{not json")
    for url in ("/api/restore/0/a-run", "/restore/0/a-run", "/api/restore/0/nowhere", "/api/restore/0/../etc",
                "/api/restore/0/broken"):
        assert client.request(url)[0] == 404, url


# -- In the browser -------------------------------------------------------------------------------
def _loaded(page, selector: str) -> list[int]:
    return page.eval_on_selector_all(selector, "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")


def test_restore_pages(browser, made: dict[str, Path], roots: Path) -> None:
    _put(made, roots)
    page = browser.page
    page.reload()
    page.wait_for_selector("#runs tbody tr[data-id='0/restore-compare-clean'] a")
    page.click("#runs tbody tr[data-id='0/restore-compare-clean'] a")
    page.wait_for_url(f"{browser.origin}/restore/0/restore-compare-clean")
    page.wait_for_selector("#prior-table tr.best")
    rows = sorted(_record(made["compare"])["priors"], key=lambda r: -r["psnr"])
    assert page.eval_on_selector_all("#prior-table tbody tr", "trs => trs.map(t => t.dataset.prior)") == [r["prior"] for r in rows]
    assert page.get_attribute("#prior-table tr.best", "data-prior") == rows[0]["prior"]
    assert page.locator("#prior-table tr.best td").first.evaluate("e => getComputedStyle(e).fontWeight") == "700"
    assert "denoise" in page.inner_text("#problem") and "best prior" in page.inner_text("#problem")
    page.wait_for_function("() => { const i = document.getElementById('figure'); return i && i.complete && i.naturalWidth > 0; }")
    page.wait_for_function("() => [...document.querySelectorAll('#images img')].every(i => i.complete && i.naturalWidth > 0)")
    assert len(_loaded(page, "#images img")) == 2 + len(rows)  # clean, degraded, one per prior
    screenshot(page, "restore-compare")

    page.goto(f"{browser.origin}/")
    page.wait_for_selector("#runs tbody tr[data-id='0/denoiser-drunet-full'] a")
    page.click("#runs tbody tr[data-id='0/denoiser-drunet-full'] a")
    page.wait_for_url(f"{browser.origin}/restore/0/denoiser-drunet-full")
    page.wait_for_selector("#chart-loss canvas")
    assert page.get_attribute("#chart-loss", "data-points") == "3"
    assert "builtin:drunet" in page.inner_text("#record-table") and "finished" in page.inner_text("#run-status")
    assert page.locator("#psnr-table tbody tr").count() == 3
    assert "training images" in page.inner_text("#psnr-note")
    assert page.locator("#comparison").is_hidden()
    screenshot(page, "denoiser-run")

    partial = roots / "denoiser-partial"  # still training: no record yet, two steps logged
    partial.mkdir()
    for name in ("train.log", "metrics.jsonl"):
        (partial / name).write_text("".join((made["denoiser"] / name).read_text().splitlines(keepends=True)[:2]))
    with runfolder.hold_running_lock(partial):
        page.goto(f"{browser.origin}/restore/0/denoiser-partial")
        page.wait_for_selector("#chart-loss canvas")
        assert page.get_attribute("#chart-loss", "data-points") == "2" and page.inner_text("#run-status") == "running"
    assert "record is written when it finishes" in page.inner_text("#problem")
