"""End-to-end fixtures: the whole lab (namespaces, daemon, transceivers) with real peers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pyctl.lab.lifecycle import Lab
from tests.labs import running


@pytest.fixture(scope="package")
def lab() -> Iterator[Lab]:
    lab_ = Lab(prefix=f"e2e{os.getpid() % 10000}", transceivers=2, metrics="127.0.0.1:9479", ttl=3)
    with running(lab_):
        yield lab_


def poll(pred: Callable[[], Any], timeout: float = 5.0, step: float = 0.1) -> Any:
    """pred()'s first truthy value within `timeout`, else its last (falsy) one."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(step)


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
