"""Interop fixtures: one namespace lab of our own (the e2e pattern, its own prefix and
metrics port, so both tiers can run in one pytest process)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pyctl.lab import Lab


@pytest.fixture(scope="package")
def lab() -> Iterator[Lab]:
    lab_ = Lab(prefix=f"iop{os.getpid() % 10000}", transceivers=1, metrics="127.0.0.1:9481")
    lab_.down(progress=lambda s: None)
    try:
        lab_.up(progress=lambda s: None)
        yield lab_
    finally:
        lab_.down(progress=lambda s: None)
