"""The Runs and run pages in Debian's Chromium: rows from the folders, filter and sort, new folders
without a reload, and a run's curves growing while metrics.jsonl grows."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .harness import record, screenshot, wait_for_data, write_run


def _rows(page) -> list[str]:
    return page.eval_on_selector_all("#runs tbody tr td:first-child a", "links => links.map(a => a.textContent)")


def test_runs_page_lists_filters_sorts_and_updates(browser, roots: Path) -> None:
    write_run(roots / "efficientnet-full", strategy="full", accuracy=0.93)
    write_run(roots / "efficientnet-lora", strategy="lora", accuracy=0.88)
    write_run(roots / "minilm-lp-ft", model="builtin:minilm", strategy="lp-ft", data="builtin:bbc-news",
              accuracy=None)
    page = browser.page
    page.reload()
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 3")
    assert page.inner_text("#runs tbody").count("finished") == 2 and "interrupted" in page.inner_text("#runs tbody")
    page.fill("#filter", "minilm")
    assert _rows(page) == ["minilm-lp-ft"]
    page.fill("#filter", "")
    page.click("th[data-key=accuracy]")  # highest accuracy first
    assert _rows(page)[:2] == ["efficientnet-full", "efficientnet-lora"]
    page.select_option("#status-filter", "interrupted")
    assert _rows(page) == ["minilm-lp-ft"]
    page.select_option("#status-filter", "")
    write_run(roots / "resnet18-gradual", model="torchvision:resnet18", strategy="gradual", accuracy=0.9)
    page.wait_for_function("() => document.querySelectorAll('#runs tbody tr').length === 4", timeout=5000)
    screenshot(page, "runs")


def test_run_page_curves_grow_while_the_run_writes(browser, roots: Path) -> None:
    import fcntl

    run = write_run(roots / "live", records=[record(1, 0.4, phase="linear-probe"), record(1, 0.5)], accuracy=None)
    handle = open(run / "train.log", "a")
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    try:
        page = browser.page
        page.goto(f"http://127.0.0.1:{browser.origin.rsplit(':', 1)[1]}/run/0/live")
        wait_for_data(page, "chart-accuracy", "valPoints", "2")
        assert page.inner_text("#run-status") == "running"
        assert "phase: fine-tune" in page.inner_text("#events")
        unfreeze = record(2, 0.6, events=[])
        data = unfreeze.to_dict()
        data["events"] = [{"kind": "unfrozen", "message": "unfrozen: layer3", "groups": ["layer3"]}]
        written = time.monotonic()
        with open(run / "metrics.jsonl", "a") as f:
            f.write(json.dumps(data) + "\n")
        wait_for_data(page, "chart-accuracy", "valPoints", "3", timeout_ms=2000)
        assert time.monotonic() - written < 2.0  # the issue: shown within 2 seconds of the line
        assert "unfrozen: layer3" in page.inner_text("#events")
    finally:
        handle.close()
    write_run(run, records=[record(1, 0.4, phase="linear-probe"), record(1, 0.5), record(2, 0.6)], accuracy=0.66)
    page.wait_for_selector("#results:not([hidden])", timeout=5000)
    assert page.inner_text("#run-status") == "finished" and "0.6600" in page.inner_text("#metrics")
