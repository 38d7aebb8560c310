"""Fixtures of the dashboard tests: a started server over temporary roots, a logged-in client,
and a browser page that fails the test on any request outside the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from transferkit.dashboard import job_queue_factory, start

from .harness import Browser, Client, sync_api_or_skip


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    return root


@pytest.fixture
def dashboard(roots: Path) -> Iterator[object]:
    d = start([roots], port=0, make_jobs=job_queue_factory(1))
    yield d
    d.stop()


@pytest.fixture
def client(dashboard) -> Client:
    return Client(dashboard).login()


@pytest.fixture
def browser(dashboard) -> Iterator[Browser]:
    sync_api = sync_api_or_skip()
    with sync_api.sync_playwright() as playwright:
        b = Browser(playwright, dashboard)
        b.page.goto(dashboard.url)
        yield b
        outside, errors = list(b.outside), list(b.console_errors)
        b.close()
    assert not outside, f"the page requested other origins: {outside}"
    assert not errors, f"errors in the page: {errors}"
