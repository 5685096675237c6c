"""The lab as a test fixture brings it up: one way for every tier."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

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
