"""The async test environment: a fake control API, a WHIP server under aiohttp's test
client, and an aiortc client that sends a tone and data-channel messages.

The fake API is a real HTTP server on a unix socket, so the transceiver's own registry
client is exercised; the real daemon and relay are the end-to-end tier's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy
from av import AudioFrame
from click.testing import CliRunner

from steer_common.endpoint import Endpoint
from transceiver import cli, ice
from transceiver.app import App
from transceiver.config import TrxConfig
from transceiver.metrics import TrxMetrics
from transceiver.registry import ControlApiRegistry
from transceiver.session import SessionEndpoint
from transceiver.whip import WhipServer

VIP = Endpoint.parse("203.0.113.10:3478")
VIP6 = Endpoint.parse("[2001:db8::10]:3478")
BACKEND = 7


@dataclass
class Call:
    method: str
    path: str
    body: dict[str, Any]  # {} for DELETE


@dataclass
class FakeControlApi:
    """Records every call; answers like docs/api.md for the session endpoints."""

    path: str
    calls: list[Call] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)  # each registration's header
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    register_status: int = 201  # set to 409/500 to refuse registrations
    register_delay: float = 0.0  # a slow daemon
    restart_status: int = 201  # set to 503 to refuse ICE restarts
    restart_delay: float = 0.0  # a slow daemon
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/sessions", self._register)
        app.router.add_post("/v1/sessions/{ufrag}/heartbeat", self._heartbeat)
        app.router.add_post("/v1/sessions/{ufrag}/restart", self._restart)
        app.router.add_delete("/v1/sessions/{ufrag}", self._delete)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.UnixSite(self._runner, self.path).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def of(self, method: str, suffix: str = "") -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.endswith(suffix)]

    @property
    def registers(self) -> list[Call]:
        return [c for c in self.calls if c.method == "POST" and c.path == "/v1/sessions"]

    @property
    def heartbeats(self) -> list[Call]:
        return self.of("POST", "/heartbeat")

    @property
    def deregisters(self) -> list[Call]:
        return self.of("DELETE")

    async def _register(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(Call("POST", request.path, body))
        self.authorizations.append(request.headers.get("Authorization", ""))
        await asyncio.sleep(self.register_delay)
        if self.register_status != 201:
            return web.json_response({"error": "ufrag live already"}, status=self.register_status)
        self.sessions[body["ufrag"]] = body
        return web.json_response({"session": body}, status=201)

    async def _heartbeat(self, request: web.Request) -> web.Response:
        self.calls.append(Call("POST", request.path, await request.json()))
        session = self.sessions.get(request.match_info["ufrag"])
        if session is None:
            return web.json_response({"error": "no such session"}, status=404)
        return web.json_response({"session": session})

    @property
    def restarts(self) -> list[Call]:
        return self.of("POST", "/restart")

    async def _restart(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(Call("POST", request.path, body))
        await asyncio.sleep(self.restart_delay)
        if self.restart_status != 201:
            return web.json_response({"error": "store unavailable"}, status=self.restart_status)
        session = self.sessions.pop(request.match_info["ufrag"], None)
        if session is None:
            return web.json_response({"error": "no such session"}, status=404)
        self.sessions[body["ufrag"]] = {**session, "ufrag": body["ufrag"]}
        return web.json_response({"session": self.sessions[body["ufrag"]]}, status=201)

    async def _delete(self, request: web.Request) -> web.Response:
        self.calls.append(Call("DELETE", request.path, {}))
        session = self.sessions.pop(request.match_info["ufrag"], None)
        if session is None:
            return web.json_response({"error": "no such session"}, status=404)
        return web.json_response({"session": session, "flows_removed": 0})


@contextlib.asynccontextmanager
async def fake_api() -> AsyncIterator[FakeControlApi]:
    # unix socket paths are limited to ~108 bytes: pytest's tmp_path can be longer
    with tempfile.TemporaryDirectory(prefix="trx") as tmp:
        api = FakeControlApi(os.path.join(tmp, "api.sock"))
        await api.start()
        try:
            yield api
        finally:
            await api.stop()


@dataclass
class Env:
    api: FakeControlApi
    server: WhipServer
    http: TestClient
    metrics: TrxMetrics


@contextlib.asynccontextmanager
async def whip_env(app: App | None = None, **overrides: Any) -> AsyncIterator[Env]:
    async with fake_api() as api:
        kwargs: dict[str, Any] = {
            "bind_ip": "127.0.0.1",
            "vips": (VIP,),
            "backend": BACKEND,
            "api_socket": api.path,
            "ttl": 30,
            "idle_timeout": 30.0,
            "cors_origins": ("*",),  # as the lab: open for development
            "internal_nets": (),  # the test peers' candidates are on 127.0.0.1
        }
        kwargs.update(overrides)
        config = TrxConfig(**kwargs)
        metrics = TrxMetrics()
        server = WhipServer(
            config,
            ControlApiRegistry(socket_path=api.path),
            metrics=metrics,
            app=app,
        )
        http = TestClient(TestServer(server.app()))
        await http.start_server()
        try:
            yield Env(api, server, http, metrics)
        finally:
            await http.close()  # runs the app's on_shutdown: server.shutdown()


class ToneTrack(MediaStreamTrack):
    """A 440 Hz sine in 20 ms mono s16 frames at 48 kHz, paced in real time."""

    kind = "audio"

    def __init__(self, hz: float = 440.0, rate: int = 48000) -> None:
        super().__init__()
        self.hz, self.rate, self.samples = hz, rate, rate // 50
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += self.samples
            await asyncio.sleep(self._start + self._pts / self.rate - loop.time())
        t = (np.arange(self.samples) + self._pts) / self.rate
        pcm = (0.5 * 32767 * np.sin(2 * math.pi * self.hz * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.rate)
        return frame


@dataclass
class Peer:
    """An aiortc WHIP client: a tone out, a data channel, and what comes back."""

    pc: RTCPeerConnection
    channel: Any
    echoed_messages: list[str | bytes] = field(default_factory=list)
    echoed_frames: list[AudioFrame] = field(default_factory=list)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await self.pc.close()


async def make_peer(*, audio: bool = True, data: bool = True) -> Peer:
    """Client with its single host socket on 127.0.0.1 (aioice skips loopback by default)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    if audio:
        pc.addTransceiver(ToneTrack(), direction="sendrecv")
    channel = pc.createDataChannel("chat") if data else None
    peer = Peer(pc, channel)
    if channel is not None:
        channel.on("open", peer.opened.set)
        channel.on("message", peer.echoed_messages.append)

    @pc.on("track")
    def on_track(track: Any) -> None:
        async def collect() -> None:
            while True:
                try:
                    peer.echoed_frames.append(await track.recv())
                except MediaStreamError:
                    return

        peer.tasks.append(asyncio.ensure_future(collect()))

    (transport,) = ice.ice_transports(pc)
    await ice.gather_host(ice.connection_of(transport), "127.0.0.1")
    await pc.setLocalDescription(await pc.createOffer())
    return peer


def strip_candidates(sdp: str) -> str:
    """The offer as a client behind NAT looks from the relay's side: no usable candidate,
    so the transceiver can only learn the client as peer-reflexive."""
    return "".join(
        line + "\r\n"
        for line in sdp.splitlines()
        if line and not line.startswith("a=candidate:") and line != "a=end-of-candidates"
    )


def direct_answer(answer: str, sock: str) -> str:
    """Stand in for the relay: point the answer's VIP candidate at the session socket."""
    target = Endpoint.parse(sock)
    return re.sub(
        rf"{re.escape(str(VIP.ip))} {VIP.port} typ host",
        f"{target.ip} {target.port} typ host",
        answer,
    )


async def wait_for(predicate: Any, timeout: float = 10.0, step: float = 0.05) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        await asyncio.sleep(step)


async def connect(env: Env, peer: Peer, *, hide_candidates: bool) -> tuple[SessionEndpoint, str]:
    """POST the peer's offer, apply the answer pointed at the session socket (standing in
    for the relay), wait for ICE; the session and its WHIP Location."""
    offer = peer.pc.localDescription.sdp
    if hide_candidates:
        offer = strip_candidates(offer)
    status, headers, answer = await post_offer(env.http, offer)
    assert status == 201, answer
    reg = env.api.registers[-1]
    await peer.pc.setRemoteDescription(
        RTCSessionDescription(direct_answer(answer, reg.body["sock"]), "answer")
    )
    session = env.server.sessions[headers["Location"].rsplit("/", 1)[-1]]
    await asyncio.wait_for(session.connected.wait(), 10)
    return session, headers["Location"]


async def post_offer(http: TestClient, sdp: str) -> tuple[int, dict[str, str], str]:
    resp = await http.post("/whip", data=sdp.encode(), headers={"Content-Type": "application/sdp"})
    return resp.status, dict(resp.headers), await resp.text()


# the smallest valid steer-transceiver command line
BASE = ["--bind-ip", "127.0.0.1", "--vip", "203.0.113.10:3478", "--backend-id", "7"]


def invoke(args: list[str], env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli.command, args, env=env, auto_envvar_prefix=cli.ENV_PREFIX)
