"""The control-API client, and how sessions keep their registration alive."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from steer_testkit.transceiver import make_peer, post_offer, wait_for, whip_env
from transceiver.registry import ControlApiRegistry, Registration, RegistryError


async def test_heartbeats_inside_ttl_and_reregisters_when_forgotten() -> None:
    async with whip_env(ttl=3) as env:  # heartbeat every 1 s
        peer = await make_peer(audio=False)
        try:
            status, _, _ = await post_offer(env.http, peer.pc.localDescription.sdp)
        finally:
            await peer.close()
        assert status == 201
        (reg,) = env.api.registers
        ufrag = reg.body["ufrag"]
        await wait_for(lambda: len(env.api.heartbeats) >= 1, timeout=2.5)
        hb = env.api.heartbeats[0]
        assert (hb.path, hb.body) == (f"/v1/sessions/{ufrag}/heartbeat", {"ttl": 3})

        # the daemon restarts and forgets the session: the next heartbeat gets 404
        env.api.sessions.clear()
        await wait_for(lambda: len(env.api.registers) == 2, timeout=2.5)
        assert env.api.registers[1].body == reg.body
        assert ufrag in env.api.sessions
        assert (
            env.metrics.registry.get_sample_value(
                "steer_trx_registry_errors_total", {"op": "heartbeat"}
            )
            == 1
        )


class Recorder:
    def __init__(self, status: int = 201, reply: Any = None) -> None:
        self.status, self.reply = status, reply
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            (request.method, request.raw_path, dict(request.headers), await request.read())
        )
        return web.json_response(self.reply or {}, status=self.status)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


async def test_tcp_with_token_and_quoted_ufrag() -> None:
    rec = Recorder()
    async with TestServer(rec.app()) as srv:
        client = ControlApiRegistry(url=str(srv.make_url("/")), token="s3cret")
        try:
            await client.register(Registration("007ab+/cd", "10.0.0.2:40000", 7, None, 30))
            await client.heartbeat("007ab+/cd", 30)
            await client.deregister("007ab+/cd")
        finally:
            await client.close()
    assert [(m, p) for m, p, _, _ in rec.requests] == [
        ("POST", "/v1/sessions"),
        ("POST", "/v1/sessions/007ab%2B%2Fcd/heartbeat"),
        ("DELETE", "/v1/sessions/007ab%2B%2Fcd"),
    ]
    assert all(h["Authorization"] == "Bearer s3cret" for _, _, h, _ in rec.requests)
    assert rec.requests[0][3] == (
        b'{"ufrag": "007ab+/cd", "sock": "10.0.0.2:40000", "backend": 7, "ttl": 30}'
    )
    assert rec.requests[1][3] == b'{"ttl": 30}'


@pytest.mark.parametrize(
    ("status", "reply", "message"),
    [
        (409, {"error": "ufrag live already", "field": "ufrag"}, "409: ufrag live already"),
        (507, {"error": "map full"}, "507: map full"),
    ],
)
async def test_errors_carry_status_and_message(status: int, reply: Any, message: str) -> None:
    async with TestServer(Recorder(status, reply).app()) as srv:
        client = ControlApiRegistry(url=str(srv.make_url("/")))
        try:
            with pytest.raises(RegistryError) as err:
                await client.register(Registration("007abcd", "10.0.0.2:40000", 7))
        finally:
            await client.close()
    assert err.value.status == status
    assert str(err.value) == message


async def test_unreachable_socket() -> None:
    client = ControlApiRegistry(socket_path="/nonexistent/steer.sock", timeout=1)
    try:
        with pytest.raises(RegistryError, match=r"unix:/nonexistent/steer\.sock unreachable"):
            await client.deregister("007abcd")
    finally:
        await client.close()


async def test_hanging_daemon_times_out() -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/v1/sessions", hang)
    async with TestServer(app) as srv:
        client = ControlApiRegistry(url=str(srv.make_url("/")), timeout=0.3)
        try:
            with pytest.raises(RegistryError) as err:
                await client.register(Registration("007abcd", "10.0.0.2:40000", 7))
        finally:
            await client.close()
    assert err.value.status is None


def test_exactly_one_transport() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ControlApiRegistry()
    with pytest.raises(ValueError, match="exactly one"):
        ControlApiRegistry(socket_path="/x", url="http://x")
