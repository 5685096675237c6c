"""WHIP (RFC 9725) over aiohttp's test client, against a fake control API."""

from __future__ import annotations

import re
import socket

import pytest

from steer_common.ufrag import UFRAG_LEN, backend_of
from steer_testkit.transceiver import (
    BACKEND,
    VIP,
    VIP6,
    make_peer,
    post_offer,
    whip_env,
)
from transceiver import session as session_module
from transceiver.sdp import answer_candidates, answer_ufrags

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, Link, ETag, Accept-Post",
}


def _assert_cors(headers: dict[str, str]) -> None:
    for name, value in CORS.items():
        assert headers.get(name) == value, (name, headers)
    allowed = {h.strip() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"Content-Type", "Authorization"} <= allowed
    methods = {m.strip() for m in headers["Access-Control-Allow-Methods"].split(",")}
    assert {"POST", "DELETE", "OPTIONS"} <= methods


def _port_is_free(sock: str) -> bool:
    host, _, port = sock.rpartition(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((host, int(port)))
        return True
    except OSError:
        return False
    finally:
        s.close()


async def test_post_answers_with_only_the_vip() -> None:
    async with whip_env() as env:
        peer = await make_peer()
        try:
            status, headers, answer = await post_offer(env.http, peer.pc.localDescription.sdp)
        finally:
            await peer.close()
        assert status == 201, answer
        assert headers["Content-Type"] == "application/sdp"
        assert re.fullmatch(r"/whip/[A-Za-z0-9_-]{16}", headers["Location"])
        _assert_cors(headers)

        (reg,) = env.api.registers
        (ufrag,) = answer_ufrags(answer)
        sock = reg.body["sock"]
        assert reg.body == {
            "ufrag": ufrag,
            "sock": sock,
            "backend": BACKEND,
            "vip": str(VIP),
            "ttl": 30,
        }
        assert sock.startswith("127.0.0.1:")
        # the answer names the VIP and nothing else: not the socket, not its port
        vip_line = f"a=candidate:vip0 1 udp 2130706431 {VIP.ip} {VIP.port} typ host"
        assert answer_candidates(answer) == [vip_line, vip_line]  # audio + data, bundled
        assert "127.0.0.1" not in answer
        assert f" {sock.rpartition(':')[2]} " not in answer
        assert re.findall(r"^m=\w+ (\d+) ", answer, re.M) == ["3478", "3478"]
        assert re.findall(r"^c=.*$", answer, re.M) == [f"c=IN IP4 {VIP.ip}\r"] * 2
        assert answer.count("a=end-of-candidates\r\n") == 2
        assert answer.endswith("\r\n") and "\n" not in answer.replace("\r\n", "")
        # the ufrag: long, ICE characters, carrying our backend id; a strong password
        assert len(ufrag) == UFRAG_LEN >= 16
        assert re.fullmatch(r"[A-Za-z0-9+/]+", ufrag)
        assert backend_of(ufrag) == BACKEND
        (pwd,) = set(re.findall(r"^a=ice-pwd:(\S+)\r$", answer, re.M))
        assert len(pwd) >= 32
        assert env.server.sessions.keys() == {headers["Location"].rsplit("/", 1)[1]}


async def test_two_vips_both_advertised_first_preferred() -> None:
    async with whip_env(vips=(VIP, VIP6)) as env:
        peer = await make_peer(audio=False)
        try:
            status, _, answer = await post_offer(env.http, peer.pc.localDescription.sdp)
        finally:
            await peer.close()
        assert status == 201
        assert answer_candidates(answer) == [
            f"a=candidate:vip0 1 udp 2130706431 {VIP.ip} 3478 typ host",
            f"a=candidate:vip1 1 udp 2130706175 {VIP6.ip} 3478 typ host",
        ]
        # the socket is IPv4, so the daemon NATs its replies to the IPv4 VIP
        assert env.api.registers[0].body["vip"] == str(VIP)


async def test_wrong_content_type_is_415() -> None:
    async with whip_env() as env:
        resp = await env.http.post("/whip", data=b"v=0\r\n", headers={"Content-Type": "text/plain"})
        assert resp.status == 415
        assert "application/sdp" in await resp.text()
        _assert_cors(dict(resp.headers))
        assert env.api.calls == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"hello", "bad offer: offer is not SDP: it must start with v=0"),
        (b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no media section"),
        (b"\xff\xfe", "not UTF-8"),
    ],
    ids=["not-sdp", "no-media", "not-utf8"],
)
async def test_unparseable_offer_is_400(body: bytes, message: str) -> None:
    async with whip_env() as env:
        resp = await env.http.post("/whip", data=body, headers={"Content-Type": "application/sdp"})
        assert resp.status == 400
        assert message in await resp.text()
        assert env.api.calls == [] and env.server.sessions == {}
        assert (
            env.metrics.registry.get_sample_value(
                "steer_trx_session_failures_total", {"reason": "bad_offer"}
            )
            == 1
        )


async def test_unbundled_offer_is_400() -> None:
    async with whip_env() as env:
        peer = await make_peer()
        try:
            offer = peer.pc.localDescription.sdp.replace("a=group:BUNDLE 0 1\r\n", "")
            status, _, text = await post_offer(env.http, offer)
        finally:
            await peer.close()
        assert status == 400
        assert "max-bundle" in text
        assert env.api.calls == []


async def test_unknown_resource_is_404() -> None:
    async with whip_env() as env:
        for method in ("DELETE", "PATCH", "OPTIONS"):
            resp = await env.http.request(method, "/whip/nope")
            assert resp.status == 404, method
            assert "no such WHIP session" in await resp.text()
        resp = await env.http.get("/whip/nope/deeper")
        assert resp.status == 404
        assert env.api.calls == []


async def test_options_preflight() -> None:
    async with whip_env() as env:
        resp = await env.http.options(
            "/whip",
            headers={
                "Origin": "http://page.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,authorization",
            },
        )
        assert resp.status == 204
        assert resp.headers["Accept-Post"] == "application/sdp"
        _assert_cors(dict(resp.headers))


async def test_delete_deregisters_once() -> None:
    async with whip_env() as env:
        peer = await make_peer()
        try:
            status, headers, _ = await post_offer(env.http, peer.pc.localDescription.sdp)
        finally:
            await peer.close()
        assert status == 201
        location = headers["Location"]
        (reg,) = env.api.registers
        ufrag = reg.body["ufrag"]

        resp = await env.http.delete(location)
        assert resp.status == 200
        _assert_cors(dict(resp.headers))
        assert [c.path for c in env.api.deregisters] == [f"/v1/sessions/{ufrag}"]
        assert env.api.sessions == {} and env.server.sessions == {}
        assert _port_is_free(reg.body["sock"]), "the session socket must be closed"

        resp = await env.http.delete(location)
        assert resp.status == 404
        assert len(env.api.deregisters) == 1


@pytest.mark.parametrize("failure", ["refused", "unreachable"])
async def test_registration_failure_is_503_and_leaves_nothing(
    failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[object] = []
    real = session_module.RTCPeerConnection

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(session_module, "RTCPeerConnection", Recording)
    async with whip_env() as env:
        if failure == "refused":
            env.api.register_status = 409
        else:
            await env.api.stop()  # the daemon is down: nothing listens on the socket
        peer = await make_peer()
        try:
            status, headers, text = await post_offer(env.http, peer.pc.localDescription.sdp)
        finally:
            await peer.close()
        assert status == 503
        assert "Location" not in headers
        if failure == "refused":
            assert "session registration failed: 409: ufrag live already" in text
            (reg,) = env.api.registers
            assert _port_is_free(reg.body["sock"]), "the session socket must be closed"
        else:
            assert "unreachable" in text
        (pc,) = created
        assert pc.connectionState == "closed"  # type: ignore[attr-defined]
        assert env.server.sessions == {}
        assert env.api.sessions == {} and env.api.deregisters == []
        assert (
            env.metrics.registry.get_sample_value(
                "steer_trx_session_failures_total", {"reason": "registration"}
            )
            == 1
        )
        assert env.metrics.registry.get_sample_value("steer_trx_sessions_active") == 0


async def test_healthz_metrics_and_page() -> None:
    async with whip_env() as env:
        peer = await make_peer(audio=False)
        try:
            status, _, _ = await post_offer(env.http, peer.pc.localDescription.sdp)
        finally:
            await peer.close()
        assert status == 201

        resp = await env.http.get("/healthz")
        assert resp.status == 200
        assert await resp.json() == {
            "ok": True,
            "sessions": 1,
            "backend": BACKEND,
            "bind_ip": "127.0.0.1",
            "vips": [str(VIP)],
        }

        resp = await env.http.get("/metrics")
        assert resp.status == 200
        text = await resp.text()
        assert "steer_trx_sessions_active 1.0" in text
        assert "steer_trx_sessions_total 1.0" in text
        assert 'steer_trx_session_failures_total{reason="registration"} 0.0' in text
        assert "steer_trx_setup_seconds_bucket" in text

        for path in ("/", "/whip.html"):
            resp = await env.http.get(path)
            assert resp.status == 200
            assert resp.content_type == "text/html"
            assert '<script src="whip.js"></script>' in await resp.text()
        resp = await env.http.get("/whip.js")
        assert resp.status == 200
        assert resp.content_type == "text/javascript"
        js = await resp.text()
        assert "window.steer = steer" in js and "getStats" in js

    # leaving the env shut the server down: the session ended and deregistered
    assert len(env.api.deregisters) == 1
    assert (
        env.metrics.registry.get_sample_value(
            "steer_trx_sessions_ended_total", {"reason": "shutdown"}
        )
        == 1
    )
    assert env.metrics.registry.get_sample_value("steer_trx_sessions_active") == 0


async def test_direct_mode_advertises_the_session_socket() -> None:
    async with whip_env(direct=True) as env:
        peer = await make_peer(audio=False)
        try:
            status, _, answer = await post_offer(env.http, peer.pc.localDescription.sdp)
        finally:
            await peer.close()
        assert status == 201
        ip, _, port = env.api.registers[0].body["sock"].rpartition(":")
        assert answer_candidates(answer) == [
            f"a=candidate:vip0 1 udp 2130706431 {ip} {port} typ host"
        ]
        assert str(VIP.ip) not in answer
