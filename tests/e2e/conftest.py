"""End-to-end fixtures: the whole lab (namespaces, daemon, transceivers) with real peers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pyctl.lab.lifecycle import Lab
from steer_testkit.labs import running


@pytest.fixture(scope="package")
def lab() -> Iterator[Lab]:
    lab_ = Lab(prefix=f"e2e{os.getpid() % 10000}", transceivers=2, metrics="127.0.0.1:9479", ttl=3)
    with running(lab_):
        yield lab_
