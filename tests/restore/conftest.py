"""Every restoration test runs its torch work on one thread (see ``one_torch_thread``)."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread_per_module(one_torch_thread):
    yield
