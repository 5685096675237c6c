"""The app interface (--app module:factory): loading, what an app sees of its session,
and what its return, its exception or its slowness does to the session and the rest."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import pytest

from steer_common.endpoint import Endpoint
from steer_testkit.transceiver import (
    BASE,
    connect,
    fake_api,
    invoke,
    make_peer,
    wait_for,
    whip_env,
)
from transceiver import ice
from transceiver import session as session_mod
from transceiver.app import App, AppLoadError, Session, load, resolve
from transceiver.apps import echo
from transceiver.config import TrxConfig


def not_a_factory_result() -> int:
    return 42


def failing_factory() -> App:
    raise RuntimeError("model weights missing")


# -- loading ------------------------------------------------------------------------------


def test_short_names_and_module_factory() -> None:
    assert resolve("echo") is echo.create_app
    assert resolve("transceiver.apps.echo:create_app") is echo.create_app
    assert load("echo") is echo.echo
    assert callable(load("speak")) and callable(load(f"{__name__}:echo.create_app"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "expected module:factory or one of echo, speak, record"),
        ("no.such.module:app", "cannot import no.such.module"),
        ("transceiver.apps.echo:nothing", "has no attribute 'nothing'"),
        ("transceiver.apps.echo:MAX_LAG", "MAX_LAG is not callable"),
        (f"{__name__}:not_a_factory_result", "returned 42, not an app"),
        (f"{__name__}:failing_factory", "the factory failed: model weights missing"),
    ],
)
def test_bad_app_specs_say_why(spec: str, message: str) -> None:
    with pytest.raises(AppLoadError) as exc:
        load(spec)
    assert message in str(exc.value)


def test_cli_app_option_and_environment(captured: list[TrxConfig]) -> None:
    assert invoke(BASE).exit_code == 0
    assert invoke([*BASE, "--app", "record"]).exit_code == 0
    assert invoke(BASE, env={"STEER_TRANSCEIVER_APP": "speak"}).exit_code == 0
    assert [c.app for c in captured] == ["echo", "record", "speak"]
    result = invoke([*BASE, "--app", "transceiver.apps.echo:nothing"])
    assert result.exit_code == 2
    assert "Invalid value for --app" in result.output and "no attribute 'nothing'" in result.output
    assert len(captured) == 3


async def test_failing_factory_stops_the_process_at_start() -> None:
    async with fake_api() as api:
        env = dict(os.environ, STEER_TRX_API_SOCKET=api.path, STEER_RECORD_FORMAT="mp3")
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("steer-transceiver")),
            *BASE,
            "--listen",
            "127.0.0.1:0",
            "--app",
            "record",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert out == b""  # never ready
    assert "cannot start: --app 'record': the factory failed: STEER_RECORD_FORMAT" in err.decode()


# -- what an app sees, and what its end does -------------------------------------------------


async def test_app_sees_its_session() -> None:
    seen: list[tuple[str, str, Endpoint | None, str]] = []

    async def app(session: Session) -> None:
        client = session.client
        reason = await session.ended()
        seen.append((session.ufrag, session.resource, client, reason))

    async with whip_env(app=app) as env:
        peer = await make_peer(audio=False)
        try:
            trx, location = await connect(env, peer, hide_candidates=True)
            (local,) = ice.connection_of(ice.ice_transports(peer.pc)[0]).local_candidates
            resp = await env.http.delete(location)
            assert resp.status == 200
        finally:
            await peer.close()
    # the client's address as it reached us (learnt peer-reflexive: the offer had none)
    assert seen == [(trx.ufrag, location, Endpoint.of(local.host, local.port), "delete")]
    assert trx.end_reason == "delete"


async def test_app_exception_ends_its_session_only(caplog: pytest.LogCaptureFixture) -> None:
    async def app(session: Session) -> None:
        async for m in session.messages():
            if m.data == "boom":
                raise RuntimeError("app bug")
            session.send(f"{m.label}:{m.data!s}".upper(), m.label)

    async with whip_env(app=app) as env:
        a, b = await make_peer(audio=False), await make_peer(audio=False)
        try:
            sa, _ = await connect(env, a, hide_candidates=True)
            sb, _ = await connect(env, b, hide_candidates=True)
            await asyncio.wait_for(a.opened.wait(), 10)
            await asyncio.wait_for(b.opened.wait(), 10)
            a.channel.send("hi")
            await wait_for(lambda: a.echoed_messages == ["CHAT:HI"])
            a.channel.send("boom")
            await asyncio.wait_for(sa.ended.wait(), 10)
            # the other session, the server and the process carry on
            b.channel.send("still here")
            await wait_for(lambda: b.echoed_messages == ["CHAT:STILL HERE"])
            assert list(env.server.sessions.values()) == [sb]
        finally:
            await a.close()
            await b.close()
    assert sa.end_reason == "app_error"
    assert (
        env.metrics.registry.get_sample_value(
            "steer_trx_session_failures_total", {"reason": "app_error"}
        )
        == 1
    )
    assert (
        env.metrics.registry.get_sample_value(
            "steer_trx_sessions_ended_total", {"reason": "app_error"}
        )
        == 1
    )
    assert f"/v1/sessions/{sa.ufrag}" in [c.path for c in env.api.deregisters]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None  # one line, no traceback
    line = errors[0].getMessage()
    assert line.startswith(f"app failed ufrag={sa.ufrag}: RuntimeError: app bug (at test_apps.py:")
    assert line.endswith(" in app)") and "\n" not in line


async def test_app_return_hangs_up() -> None:
    async def app(session: Session) -> None:
        async for m in session.messages():
            session.send("bye", m.label)
            return

    async with whip_env(app=app) as env:
        peer = await make_peer(audio=False)
        try:
            trx, _ = await connect(env, peer, hide_candidates=True)
            await asyncio.wait_for(peer.opened.wait(), 10)
            peer.channel.send("hello")
            await asyncio.wait_for(trx.ended.wait(), 10)
            await wait_for(lambda: peer.pc.connectionState == "closed")
        finally:
            await peer.close()
    assert trx.end_reason == "app_done"
    assert peer.echoed_messages == ["bye"]
    assert [c.path for c in env.api.deregisters] == [f"/v1/sessions/{trx.ufrag}"]
    assert (
        env.metrics.registry.get_sample_value(
            "steer_trx_sessions_ended_total", {"reason": "app_done"}
        )
        == 1
    )


async def test_app_that_ignores_the_end_is_cancelled(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(session_mod, "APP_GRACE", 0.3)
    cancelled = asyncio.Event()

    async def app(session: Session) -> None:
        try:
            await asyncio.Event().wait()  # never looks at the session again
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with whip_env(app=app) as env:
        peer = await make_peer(audio=False)
        try:
            trx, location = await connect(env, peer, hide_candidates=True)
            resp = await env.http.delete(location)
            assert resp.status == 200
        finally:
            await peer.close()
    assert cancelled.is_set() and trx.end_reason == "delete"
    assert f"app ufrag={trx.ufrag} still running 0.3s after the end: cancelled" in caplog.text
    assert [c.path for c in env.api.deregisters] == [f"/v1/sessions/{trx.ufrag}"]


async def test_echo_is_an_app_like_any_other() -> None:
    async with whip_env(app=load("transceiver.apps.echo:create_app")) as env:
        peer = await make_peer()
        try:
            await connect(env, peer, hide_candidates=True)
            await asyncio.wait_for(peer.opened.wait(), 10)
            peer.channel.send(b"\x00\xff")
            peer.channel.send("text")
            await wait_for(lambda: len(peer.echoed_messages) == 2)
            assert peer.echoed_messages == [b"\x00\xff", "text"]
        finally:
            await peer.close()
