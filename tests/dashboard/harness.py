"""Helpers of the dashboard tests: a server on a free port, an HTTP client holding its cookie,
run folders written from typed records, and a headless Debian Chromium that fails the test on any
request outside the server."""

from __future__ import annotations

import http.cookiejar
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import transferkit as tk

__all__ = ["CHROMIUM", "Browser", "Client", "browser_args", "record", "screenshot", "sync_api_or_skip", "wait_for",
           "wait_for_data", "write_run"]

CHROMIUM = "/usr/bin/chromium"
browser_args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Client:
    """Requests to a started dashboard; ``login()`` trades the token for the cookie."""

    dashboard: Any
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.dashboard.port}"

    def login(self) -> Client:
        status, _, _ = self.request(self.dashboard.url, follow=True)
        assert status == 200 and len(self.jar) == 1
        return self

    def request(self, url: str, *, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None,
                follow: bool = False, timeout: float = 30) -> tuple[int, bytes, dict[str, str]]:
        url = url if url.startswith("http") else self.base + url
        handlers: list[Any] = [urllib.request.HTTPCookieProcessor(self.jar)]
        if not follow:
            handlers.append(_NoRedirect())
        opener = urllib.request.build_opener(*handlers)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        if data is not None:
            req.add_header("content-type", "application/json")
        try:
            with opener.open(req, timeout=timeout) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def json(self, url: str, **kwargs: Any) -> Any:
        status, body, _ = self.request(url, **kwargs)
        assert status == 200, (url, status, body[:300])
        return json.loads(body)


def record(epoch: int, val: float, phase: str = "fine-tune", **extra: Any) -> tk.EpochRecord:
    """A plausible epoch record whose validation accuracy is ``val``."""
    values = dict(phase=tk.Phase(phase), epoch=epoch, train_loss=1.0 / epoch, train_accuracy=min(1.0, val + 0.05),
                  val_loss=1.2 / epoch, val_accuracy=val, seconds=1.5, lrs={"head": 1e-3, "layer4": 1e-4})
    values.update(extra)
    return tk.EpochRecord(**values)


def write_run(folder: Path, *, model: str = "builtin:efficientnet_lite0", strategy: str = "full",
              data: str = "builtin:digits", records: list[tk.EpochRecord] | None = None,
              accuracy: float | None = 0.9, classes: tuple[str, ...] = ("0", "1", "2")) -> Path:
    """A run folder as `transferkit train` leaves it (finished when ``accuracy`` is given)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": model, "data": data, "strategy": strategy,
                                                        "epochs": 3, "seed": 0}), encoding="utf-8")
    (folder / "model_spec.json").write_text(json.dumps({"name": model, "modality": "image",
                                                        "labels": list(classes)}), encoding="utf-8")
    records = records if records is not None else [record(1, 0.6), record(2, 0.8), record(3, 0.85)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records), encoding="utf-8")
    (folder / "train.log").write_text("", encoding="utf-8")
    if accuracy is not None:
        n = len(classes)
        metrics = tk.TestMetrics(accuracy=accuracy, macro_f1=accuracy - 0.01, n=10 * n, classes=list(classes),
                                 balanced_accuracy=round(accuracy - 0.02, 4),
                                 confusion_matrix=[[10 if i == j else 0 for j in range(n)] for i in range(n)],
                                 per_class={c: {"recall": 1.0, "support": 10} for c in classes},
                                 model=model, strategy=strategy, trainable_params=12345, total_params=99999,
                                 seconds=12.5, epochs=len(records))
        (folder / "test_metrics.json").write_text(json.dumps(metrics.to_dict()), encoding="utf-8")
    return folder


def sync_api_or_skip() -> Any:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is not installed (make browser installs Debian's chromium)")
    return pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


class Browser:
    """A headless Chromium page that aborts, and records, every request to another origin."""

    def __init__(self, playwright: Any, dashboard: Any) -> None:
        self.origin = f"http://127.0.0.1:{dashboard.port}"
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, args=browser_args)
        self.context = self.browser.new_context(viewport={"width": 1280, "height": 800})
        self.outside: list[str] = []
        self.context.route("**/*", self._guard)
        self.page = self.context.new_page()
        self.console_errors: list[str] = []
        self.page.on("console", lambda m: self.console_errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))

    def _guard(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(self.origin + "/") or url.startswith("data:"):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def close(self) -> None:
        self.context.close()
        self.browser.close()


SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "dashboard"


def screenshot(page: Any, name: str) -> Path:
    """Save the page at 1280x800 as docs/dashboard/NAME.png (the README shows these images)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.set_viewport_size({"width": 1280, "height": 800})
    page.screenshot(path=str(path))
    return path


def wait_for_data(page: Any, element_id: str, key: str, value: str, timeout_ms: float = 30000) -> None:
    """Wait until ``#element_id``'s ``dataset[key]`` (camelCase: ``valPoints`` for ``data-val-points``)
    reads ``value``. An element that is not there yet (the page still navigating after a click, or
    not rendered) is waited for: a predicate that threw would fail the test at once."""
    page.wait_for_function("([id, key, value]) => document.getElementById(id)?.dataset[key] === value",
                           arg=[element_id, key, value], timeout=timeout_ms)


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something true (returned), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
