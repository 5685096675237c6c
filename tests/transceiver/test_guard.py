"""WHIP hardening (transceiver/guard.py) on the real WhipServer: bearer token, session cap,
per-source rate, offer size, CORS, and the remote-candidate filter."""

from __future__ import annotations

import ipaddress
from typing import Any

from steer_testkit.transceiver import make_peer, whip_env
from transceiver.guard import MAX_CANDIDATES, CandidateFilter, internal_networks

TOKEN = "whip-secret-0123456789"
SDP = {"Content-Type": "application/sdp"}


async def post(env: Any, sdp: str, token: str | None = TOKEN, **headers: str) -> Any:
    h = dict(SDP, **headers)
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    resp = await env.http.post("/whip", data=sdp.encode(), headers=h)
    await resp.read()
    return resp


async def test_whip_needs_the_bearer_token() -> None:
    async with whip_env(whip_token=TOKEN) as env:
        peer = await make_peer()
        try:
            sdp = peer.pc.localDescription.sdp
            for token in (None, "wrong", TOKEN + "x"):
                resp = await post(env, sdp, token)
                assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
            assert env.api.calls == [] and env.server.sessions == {}
            # a preflight carries no Authorization: it is answered
            resp = await env.http.options("/whip", headers={"Origin": "http://x.example"})
            assert resp.status == 204
            resp = await post(env, sdp)
            assert resp.status == 201
            location = resp.headers["Location"]
            assert (await env.http.delete(location)).status == 401
            assert len(env.server.sessions) == 1
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert (await env.http.delete(location, headers=auth)).status == 200
        finally:
            await peer.close()
        failures = env.metrics.failures.labels("unauthorized")._value.get()
        assert failures == 4


async def test_over_the_cap_is_503_with_retry_after() -> None:
    async with whip_env(max_sessions=1) as env:
        peers = [await make_peer(), await make_peer()]
        try:
            assert (await post(env, peers[0].pc.localDescription.sdp, None)).status == 201
            resp = await post(env, peers[1].pc.localDescription.sdp, None)
            assert resp.status == 503 and resp.headers["Retry-After"] == "5"
            assert "full (1 sessions)" in await resp.text()
            assert len(env.api.registers) == 1
        finally:
            for p in peers:
                await p.close()


async def test_rate_limit_per_source_and_offer_size() -> None:
    async with whip_env(rate_limit=2) as env:
        big = "v=0\r\n" + "a=x-padding:" + "p" * (40 * 1024) + "\r\n"
        resp = await post(env, big, None)
        assert resp.status == 413 and "32768 bytes" in await resp.text()

        async def chunks() -> Any:
            yield b"v=0\r\n"

        headers = {"Content-Type": "application/sdp"}
        resp = await env.http.post("/whip", data=chunks(), headers=headers)
        assert resp.status == 411
        assert env.api.calls == []
        # the bucket holds 2: the third offer within the minute is refused before parsing
        statuses = [(await post(env, "v=0\r\n", None)).status for _ in range(3)]
        assert 429 not in statuses[:2] and statuses[2] == 429
        assert len(env.api.calls) == 0
        resp = await post(env, "v=0\r\n", None)
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1


async def test_cors_is_closed_unless_origins_are_named() -> None:
    async with whip_env(cors_origins=()) as env:
        resp = await env.http.options("/whip", headers={"Origin": "http://evil.example"})
        assert resp.status == 204 and "Access-Control-Allow-Origin" not in resp.headers
    async with whip_env(cors_origins=("https://app.example",)) as env:
        resp = await env.http.options("/whip", headers={"Origin": "https://app.example"})
        assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        assert resp.headers["Vary"] == "Origin"
        resp = await env.http.options("/whip", headers={"Origin": "http://evil.example"})
        assert "Access-Control-Allow-Origin" not in resp.headers
    async with whip_env(cors_origins=("*",)) as env:
        resp = await env.http.options("/whip", headers={"Origin": "http://any.example"})
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]


def candidate(i: int, ip: str, transport: str = "udp") -> str:
    return f"a=candidate:{i} 1 {transport} 2122260223 {ip} {40000 + i} typ host"


def test_candidate_filter_keeps_a_few_public_ones() -> None:
    blocked = internal_networks(("auto", "10.0.0.0/8"))
    f = CandidateFilter(blocked)
    internal = ["127.0.0.1", "10.88.0.12", "169.254.1.1", "::1", "fe80::1", "0.0.0.0"]
    internal += ["224.0.0.1", "::ffff:10.0.0.1", "10.1.2.3"]
    lines = [candidate(i, internal[i % len(internal)]) for i in range(150)]
    lines += [candidate(150, "host.local"), candidate(151, "198.51.100.9", "tcp")]
    lines += [candidate(200 + i, f"198.51.100.{i}") for i in range(48)]
    sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" + "\r\n".join(lines) + "\r\n"
    out, dropped = f(sdp)
    kept = [ln for ln in out.splitlines() if ln.startswith("a=candidate:")]
    assert len(kept) == MAX_CANDIDATES and dropped == 200 - MAX_CANDIDATES
    ips = [ipaddress.ip_address(ln.split()[4]) for ln in kept]
    assert ips == [ipaddress.ip_address(f"198.51.100.{i}") for i in range(MAX_CANDIDATES)]
    assert out.startswith("v=0\r\nm=audio 9")


async def test_rate_limit_sees_the_client_behind_a_trusted_ingress_only() -> None:
    # the test client connects from 127.0.0.1: trusted as an ingress here
    async with whip_env(rate_limit=1, forwarded_allow_ips=("127.0.0.1",)) as env:
        for client in ("198.51.100.2", "198.51.100.3"):  # one bucket each
            resp = await post(env, "v=0\r\n", None, **{"X-Forwarded-For": client})
            assert resp.status != 429, client
        # a client's own entry before the ingress's does not buy a fresh bucket
        resp = await post(env, "v=0\r\n", None, **{"X-Forwarded-For": "1.2.3.4, 198.51.100.2"})
        assert resp.status == 429 and "198.51.100.2" in await resp.text()
    async with whip_env(rate_limit=1) as env:  # not trusted: the header is ignored
        for client in ("198.51.100.2", "198.51.100.3"):
            resp = await post(env, "v=0\r\n", None, **{"X-Forwarded-For": client})
        assert resp.status == 429 and "127.0.0.1" in await resp.text()
