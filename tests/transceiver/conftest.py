"""Fixtures for the transceiver tests: ``async def`` tests run on a fresh event loop each
(no pytest-asyncio here), and the async environment lives in steer_testkit.transceiver."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
from collections.abc import Iterator

import aioice.ice
import pytest

from transceiver import cli
from transceiver.config import TrxConfig


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    try:
        asyncio.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), timeout=60))
    finally:
        # run finalizers of the loop's leftovers now: left for a later GC pass they can
        # fire inside ast.parse and trip CPython 3.11.2's "AST constructor recursion
        # depth mismatch" when pytest imports a module late
        gc.collect()
    return True


@pytest.fixture(autouse=True)
def _quiet_ice(caplog: pytest.LogCaptureFixture) -> None:
    # our lifecycle lines at INFO (tests assert on them), aioice/aiortc only when they warn
    caplog.set_level(logging.INFO, logger="steer.transceiver")
    for name in ("aioice", "aiortc"):
        logging.getLogger(name).setLevel(logging.WARNING)


@pytest.fixture
def stun_usernames(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """USERNAME of every authenticated-or-not Binding Request any aioice agent receives."""
    seen: list[str] = []
    original = aioice.ice.Connection.request_received

    def spy(self: aioice.ice.Connection, message, addr, protocol):  # type: ignore[no-untyped-def]
        username = message.attributes.get("USERNAME")
        if username is not None:
            seen.append(username)
        return original(self, message, addr, protocol)

    monkeypatch.setattr(aioice.ice.Connection, "request_received", spy)
    yield seen


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[TrxConfig]:
    configs: list[TrxConfig] = []

    def fake_run(config: TrxConfig) -> int:
        configs.append(config)
        return 0

    monkeypatch.setattr(cli, "run", fake_run)
    return configs
