"""Several control APIs (every relay of a fleet): calls go to one at a time and move to the
next when it is unreachable, times out or answers 503; a refusal that is the request's
moves nothing; when none accepts, the WHIP offer gets 503 and nothing stays registered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from steer_testkit.transceiver import (
    BACKEND,
    BASE,
    VIP,
    Call,
    FakeControlApi,
    invoke,
    make_peer,
    post_offer,
    wait_for,
)
from transceiver.config import TrxConfig
from transceiver.metrics import TrxMetrics
from transceiver.registry import ControlApiRegistry, Registration, RegistryError
from transceiver.service import make_registry
from transceiver.whip import WhipServer


@dataclass
class Fleet:
    a: FakeControlApi
    b: FakeControlApi
    server: WhipServer
    http: TestClient
    metrics: TrxMetrics

    @property
    def switches(self) -> float | None:
        return self.metrics.registry.get_sample_value("steer_trx_api_switches_total")

    async def offer(self) -> tuple[int, str]:
        peer = await make_peer(audio=False)
        try:
            status, _, body = await post_offer(self.http, peer.pc.localDescription.sdp)
        finally:
            await peer.close()
        return status, body


@contextlib.asynccontextmanager
async def two_apis(ttl: int = 30) -> AsyncIterator[Fleet]:
    """A WHIP server whose registry has two fake control APIs, `a` first."""
    with tempfile.TemporaryDirectory(prefix="trx") as tmp:  # short unix socket paths
        a = FakeControlApi(os.path.join(tmp, "a.sock"))
        b = FakeControlApi(os.path.join(tmp, "b.sock"))
        await a.start()
        await b.start()
        config = TrxConfig(
            bind_ip="127.0.0.1",
            vips=(VIP,),
            backend=BACKEND,
            api_socket=a.path,
            api_fallbacks=(b.path,),
            ttl=ttl,
            internal_nets=(),
        )
        metrics = TrxMetrics()
        server = WhipServer(config, make_registry(config, metrics), metrics=metrics)
        http = TestClient(TestServer(server.app()))
        await http.start_server()
        try:
            yield Fleet(a, b, server, http, metrics)
        finally:
            await http.close()
            await a.stop()
            await b.stop()


async def test_first_api_dies_registration_and_heartbeats_go_to_the_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with two_apis(ttl=3) as f:  # heartbeats every 1 s
        status, _ = await f.offer()
        assert status == 201
        (reg,) = f.a.registers
        ufrag = reg.body["ufrag"]
        assert f.b.calls == [] and f.switches == 0

        await f.a.stop()  # relay A dies
        with caplog.at_level(logging.WARNING, logger="steer.transceiver.registry"):
            await wait_for(lambda: len(f.b.heartbeats) >= 1, timeout=3)
            assert f.b.heartbeats[0].path == f"/v1/sessions/{ufrag}/heartbeat"
            # the fake B does not take over like a fleet relay: its 404 makes the session
            # register again, there
            await wait_for(lambda: ufrag in f.b.sessions, timeout=3)
            status, _ = await f.offer()
            assert status == 201
        assert len(f.b.registers) == 2 and f.b.registers[0].body == reg.body
        assert len(f.a.registers) == 1
        assert f.switches == 1
        switched = [r.getMessage() for r in caplog.records if "switching" in r.getMessage()]
        assert len(switched) == 1, switched
        assert f"unix:{f.a.path} failed" in switched[0]
        assert switched[0].endswith(f"switching to unix:{f.b.path}")


@pytest.mark.parametrize(("refusal", "moves"), [(409, False), (403, False), (503, True)])
async def test_only_503_of_the_refusals_moves_on(refusal: int, moves: bool) -> None:
    async with two_apis() as f:
        f.a.register_status = refusal
        status, body = await f.offer()
        assert len(f.a.registers) == 1
        if moves:  # a draining relay: the session registers with the next
            assert status == 201, body
            assert len(f.b.registers) == 1 and f.switches == 1
        else:  # the request's fault: the answer, the next API never asked
            assert status == 503 and f"{refusal}: ufrag live already" in body
            assert f.b.calls == [] and f.switches == 0
            assert f.server.sessions == {}


async def test_all_down_503_and_no_session() -> None:
    async with two_apis() as f:
        await f.a.stop()
        f.b.register_status = 503  # B draining: nobody accepts
        status, body = await f.offer()
        assert status == 503 and "registration failed" in body
        assert len(f.b.registers) == 1 and f.b.sessions == {} and f.a.sessions == {}
        assert f.server.sessions == {} and f.b.deregisters == []
        failed = f.metrics.registry.get_sample_value(
            "steer_trx_session_failures_total", {"reason": "registration"}
        )
        assert failed == 1
        # a → b, then b → a: each endpoint tried once, both moves counted
        assert f.switches == 2

        f.b.register_status = 201  # B back: the next offer registers there
        status, _ = await f.offer()
        assert status == 201 and len(f.b.sessions) == 1


async def test_a_hanging_api_times_out_to_the_next() -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(10)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/v1/sessions", hang)

    async def accept(request: web.Request) -> web.Response:
        return web.json_response({}, status=201)

    switches: list[int] = []
    async with TestServer(app) as slow, TestServer(app) as slow2:
        ok = web.Application()
        ok.router.add_post("/v1/sessions", accept)
        async with TestServer(ok) as good:
            urls = [str(s.make_url("/")) for s in (slow, good, slow2)]
            client = ControlApiRegistry(url=urls, timeout=0.3, on_switch=lambda: switches.append(1))
            try:
                await client.register(Registration("007abcd", "10.0.0.2:40000", 7))
                assert client.describe() == urls[1] and len(switches) == 1
                await client.register(Registration("007abce", "10.0.0.2:40001", 7))
                assert len(switches) == 1  # stays on the one that answers
            finally:
                await client.close()


async def test_one_endpoint_raises_without_switching() -> None:
    switches: list[int] = []
    client = ControlApiRegistry(
        socket_path=["/nonexistent/steer.sock"], on_switch=lambda: switches.append(1)
    )
    try:
        with pytest.raises(RegistryError) as err:
            await client.deregister("007abcd")
    finally:
        await client.close()
    assert err.value.status is None and switches == []


def test_cli_repeated_api_socket_and_environment(captured: list[TrxConfig]) -> None:
    assert (
        invoke([*BASE, "--api-socket", "/run/a.sock", "--api-socket", "/run/b.sock"]).exit_code == 0
    )
    env = {"STEER_TRX_API_URL": "http://10.0.0.1:9100 http://10.0.0.2:9100"}
    assert invoke(BASE, env=env).exit_code == 0
    assert [(c.api_sockets, c.api_urls) for c in captured] == [
        (("/run/a.sock", "/run/b.sock"), ()),
        ((), ("http://10.0.0.1:9100", "http://10.0.0.2:9100")),
    ]
    twice = invoke([*BASE, "--api-socket", "/run/a.sock", "--api-socket", "/run/a.sock"])
    assert twice.exit_code == 2 and "given twice" in twice.output


class FleetRelay(FakeControlApi):
    """Answers a heartbeat or end of a session it did not register as a live fleet relay
    does when another live relay registered it: 409."""

    async def _heartbeat(self, request: web.Request) -> web.Response:
        if request.match_info["ufrag"] not in self.sessions:
            self.calls.append(Call("POST", request.path, await request.json()))
            return web.json_response({"error": "session is relay a's"}, status=409)
        return await super()._heartbeat(request)

    async def _delete(self, request: web.Request) -> web.Response:
        if request.match_info["ufrag"] not in self.sessions:
            self.calls.append(Call("DELETE", request.path, {}))
            return web.json_response({"error": "session is relay a's"}, status=409)
        return await super()._delete(request)


async def test_a_409_heartbeat_is_asked_of_the_relay_that_owns_it() -> None:
    """A moved to B on a mere 503 while A lives: the sessions A registered still heartbeat
    and end there (B answers 409), and the registry stays on B."""
    with tempfile.TemporaryDirectory(prefix="trx") as tmp:
        a, b = FleetRelay(os.path.join(tmp, "a.sock")), FleetRelay(os.path.join(tmp, "b.sock"))
        await a.start()
        await b.start()
        switches: list[int] = []
        client = ControlApiRegistry(
            socket_path=[a.path, b.path], on_switch=lambda: switches.append(1)
        )
        try:
            await client.register(Registration("007aaaa", "10.0.0.2:40000", 7, None, 30))
            a.register_status = 503  # A drains
            await client.register(Registration("007bbbb", "10.0.0.2:40001", 7, None, 30))
            assert (set(a.sessions), set(b.sessions)) == ({"007aaaa"}, {"007bbbb"})
            await client.heartbeat("007aaaa", 30)
            await client.heartbeat("007bbbb", 30)
            await client.deregister("007aaaa")
            assert client.describe() == f"unix:{b.path}" and switches == [1]
        finally:
            await client.close()
            await a.stop()
            await b.stop()
    assert [c.path for c in b.heartbeats] == [
        "/v1/sessions/007aaaa/heartbeat",
        "/v1/sessions/007bbbb/heartbeat",
    ]
    assert [c.path for c in a.heartbeats] == ["/v1/sessions/007aaaa/heartbeat"]
    assert a.sessions == {} and [c.path for c in a.deregisters] == ["/v1/sessions/007aaaa"]
    assert [c.path for c in b.deregisters] == ["/v1/sessions/007aaaa"]  # asked first: 409
