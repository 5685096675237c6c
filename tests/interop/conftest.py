"""Interop fixtures: one namespace lab of our own (the e2e pattern, its own prefix and
metrics port, so both tiers can run in one pytest process)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pyctl.lab.lifecycle import Lab
from steer_testkit.labs import running

# announced in every 201 (RFC 9725 section 4.6) and never contacted: no client here uses it
ICE_SERVER = "stun:stun.example.net:3478"


@pytest.fixture(scope="package")
def lab() -> Iterator[Lab]:
    lab_ = Lab(prefix=f"iop{os.getpid() % 10000}", transceivers=1, metrics="127.0.0.1:9491")
    with running(lab_, env={"STEER_TRX_ICE_SERVER": ICE_SERVER}):
        yield lab_
