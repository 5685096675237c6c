"""The lab as the tests and the benchmark bring it up, one way for every tier (running),
a lab with the client behind the NAT box (nat_lab), its per-reason packet counts and a
poll for a condition on it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from pyctl.lab.lifecycle import Lab


def quiet(_: str) -> None:
    """A progress callback that prints nothing (pytest shows the log on failure)."""


@contextlib.contextmanager
def running(lab: Lab, env: dict[str, str] | None = None) -> Iterator[Lab]:
    """`lab` up for the block (after clearing what a crashed run left), down after, even on
    failure. `env` is set for the block: the lab's processes inherit it when they start."""
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    lab.down(progress=quiet)
    try:
        lab.up(progress=quiet)
        yield lab
    finally:
        lab.down(progress=quiet)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
