"""End-to-end fixtures: the whole lab (namespaces, daemon, transceivers) with real peers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pyctl.lab.lifecycle import Lab
from tests.labs import running


@pytest.fixture(scope="package")
def lab() -> Iterator[Lab]:
    lab_ = Lab(prefix=f"e2e{os.getpid() % 10000}", transceivers=2, metrics="127.0.0.1:9479", ttl=3)
    with running(lab_):
        yield lab_


def nat_lab(tag: str, transceivers: int, metrics_port: int) -> Lab:
    """A lab with the client behind the NAT box (`lab up --nat`), named `tag` + pid; each
    module's own metrics port (no two labs share one)."""
    return Lab(
        prefix=f"{tag}{os.getpid() % 10000}",
        transceivers=transceivers,
        metrics=f"127.0.0.1:{metrics_port}",
        ttl=3,
        nat=True,
    )


def reason_counts(lab: Lab) -> dict[str, int]:
    return {k: v["packets"] for k, v in lab.api().stats()["reasons"].items()}
