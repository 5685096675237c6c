"""ICE restart over WHIP PATCH (RFC 9725 section 4.3.2): the PATCH handler's refusals
(each changes nothing), and a real aiortc client restarting ICE against the transceiver
with the DTLS and SRTP session kept (no relay: the test points our candidate at the session
socket, as in test_e2e_aiortc.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from aioice import Candidate, stun
from aioice.ice import random_string

from steer_common import seal
from steer_testkit.transceiver import (
    Env,
    Peer,
    connect,
    direct_answer,
    make_peer,
    wait_for,
    whip_env,
)
from transceiver import ice, icerestart, sdpfrag
from transceiver.session import SessionEndpoint

FRAG = sdpfrag.CONTENT_TYPE
NEW_PWD = "p" * 24


def conn_of(pc: Any) -> Any:
    return ice.connection_of(ice.ice_transports(pc)[0])


def frag(ufrag: str | None, pwd: str | None, *extra: str) -> bytes:
    lines = ["m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0"]
    if ufrag is not None:
        lines.append(f"a=ice-ufrag:{ufrag}")
    if pwd is not None:
        lines.append(f"a=ice-pwd:{pwd}")
    return ("\r\n".join([*lines, *extra]) + "\r\n").encode()


async def patch(env: Env, location: str, body: bytes, **headers: str) -> tuple[int, Any, str]:
    headers.setdefault("Content-Type", FRAG)
    resp = await env.http.patch(location, data=body, headers=headers)
    return resp.status, resp.headers, await resp.text()


def unchanged(env: Env, session: SessionEndpoint, ufrag: str, client_ufrag: str) -> None:
    """Nothing of a refused PATCH reached the daemon or the ICE agent."""
    assert env.api.restarts == []
    assert session.ufrag == ufrag and list(env.api.sessions) == [ufrag]
    conn = conn_of(session.pc)
    assert conn.local_username == ufrag and conn.remote_username == client_ufrag


BAD = [
    (b"\xff\xfe", "not UTF-8"),
    (b"hello\r\n", "not an SDP line"),
    (frag("abcd", None), "go together"),
    (frag("abcd", "short"), "a=ice-pwd must be 22-256"),
    (frag("a:cd", NEW_PWD), "a=ice-ufrag must be 4-256"),
    (frag("abcd", NEW_PWD, "a=ice-ufrag:efgh"), "two different a=ice-ufrag"),
    (frag("abcd", NEW_PWD, "a=candidate:1 1 udp x 10.0.0.1 9 typ host"), "bad candidate"),
    (b"", "no a=ice-ufrag"),
]


@pytest.mark.parametrize(("body", "message"), BAD, ids=[m for _, m in BAD])
async def test_a_malformed_fragment_is_400_and_changes_nothing(body: bytes, message: str) -> None:
    async with whip_env() as env:
        peer = await make_peer(audio=False)
        try:
            session, location = await connect(env, peer, hide_candidates=True)
            client = conn_of(peer.pc).local_username
            status, _, text = await patch(env, location, body, **{"If-Match": "*"})
            assert status == 400 and message in text, text
            unchanged(env, session, session.ufrag, client)
        finally:
            await peer.close()


async def test_refusals_say_why_and_change_nothing() -> None:
    async with whip_env(whip_token="s3cret-token") as env:
        peer = await make_peer(audio=False)
        try:
            auth = {"Authorization": "Bearer s3cret-token"}
            offer = peer.pc.localDescription.sdp
            resp = await env.http.post(
                "/whip", data=offer.encode(), headers={"Content-Type": "application/sdp", **auth}
            )
            assert resp.status == 201
            location = resp.headers["Location"]
            session = env.server.sessions[location.rsplit("/", 1)[-1]]
            ufrag = session.ufrag
            client = conn_of(session.pc).remote_username
            restart = frag("newc", NEW_PWD)

            # no token: 401, as every WHIP call
            status, _, _ = await patch(env, location, restart)
            assert status == 401
            # the wrong type: 415 and what PATCH takes
            status, headers, text = await patch(
                env, location, restart, **{"Content-Type": "application/sdp"}, **auth
            )
            assert status == 415 and headers["Accept-Patch"] == FRAG, text
            # an If-Match that is neither * nor the current ETag: 412
            status, _, text = await patch(env, location, restart, **{"If-Match": '"x"'}, **auth)
            assert status == 412 and "If-Match" in text
            # trickle: the current credentials (or none) with candidates: 422 (RFC 9725 4.3.1)
            cand = "a=candidate:1 1 udp 2130706431 198.51.100.7 5000 typ host"
            for body in (
                frag(client, conn_of(session.pc).remote_password, cand),
                frag(None, None, cand),
            ):
                status, _, text = await patch(env, location, body, **auth)
                assert status == 422 and "trickle ICE is not supported" in text, text
            # too large: 413
            status, _, _ = await patch(env, location, b"a=x\r\n" * 10000, **auth)
            assert status == 413
            # no Content-Length (chunked): 411

            async def chunked() -> Any:
                yield restart

            resp = await env.http.patch(
                location, data=chunked(), headers={"Content-Type": FRAG, **auth}
            )
            assert resp.status == 411, await resp.text()
            # the session has not connected (the answer was never applied): 409
            status, _, text = await patch(env, location, restart, **auth)
            assert status == 409 and "not connected" in text, text
            unchanged(env, session, ufrag, client)
            refused = env.metrics.ice_restarts.labels("refused")._value.get()
            assert refused == 7
        finally:
            await peer.close()


async def test_a_registration_refused_is_503_and_changes_nothing() -> None:
    async with whip_env() as env:
        peer = await make_peer(audio=False)
        try:
            session, location = await connect(env, peer, hide_candidates=True)
            ufrag, client = session.ufrag, conn_of(peer.pc).local_username
            env.api.restart_status = 503
            status, _, text = await patch(env, location, frag("newc", NEW_PWD))
            assert status == 503 and "could not be registered" in text, text
            assert [c.body for c in env.api.restarts] != []  # it asked, the daemon refused
            env.api.calls = [c for c in env.api.calls if not c.path.endswith("/restart")]
            unchanged(env, session, ufrag, client)
        finally:
            await peer.close()


async def test_two_restarts_at_once_run_one_after_the_other() -> None:
    """Two PATCHes at the same time (a slow daemon keeps the first in flight): the second
    restarts the ufrag the first gave the session, not the one the first replaced, and both
    are answered."""
    async with whip_env() as env:
        peer = await make_peer(audio=False)
        try:
            session, location = await connect(env, peer, hide_candidates=True)
            first = session.ufrag
            env.api.restart_delay = 0.3
            answers = await asyncio.gather(
                patch(env, location, frag("newa", NEW_PWD)),
                patch(env, location, frag("newb", NEW_PWD)),
            )
            assert [a[0] for a in answers] == [200, 200], answers
            one, two = env.api.restarts
            assert one.path == f"/v1/sessions/{first}/restart"
            assert two.path == f"/v1/sessions/{one.body['ufrag']}/restart"
            assert session.ufrag == two.body["ufrag"] and list(env.api.sessions) == [session.ufrag]
            assert answers[1][1]["ETag"] == f'"{session.ufrag}"'
        finally:
            await peer.close()


async def test_restarts_are_rate_limited_and_their_candidates_capped() -> None:
    """A client's PATCHes: past PATCHES_PER_MIN in a burst the next is 429 with
    Retry-After and changes nothing; a fragment's candidates are capped like an offer's;
    one wait for a nomination per session (a newer restart replaces the one before)."""
    from transceiver import guard, whip

    async with whip_env() as env:
        peer = await make_peer(audio=False)
        try:
            session, location = await connect(env, peer, hide_candidates=True)
            cands = [f"a=candidate:{i} 1 udp 2122260223 198.51.100.{i} 4000{i} typ host"
                     for i in range(1, 10)]  # fmt: skip
            codes = []
            for i in range(whip.PATCHES_PER_MIN):
                status, headers, _ = await patch(env, location, frag(f"rl{i:02d}", NEW_PWD, *cands))
                codes.append(status)
            assert codes == [200] * whip.PATCHES_PER_MIN, codes
            conn = conn_of(session.pc)
            remote = [c for c in conn._remote_candidates if c.type == "host"]
            assert len(remote) <= guard.MAX_CANDIDATES, len(remote)
            tasks = [t for t in session._tasks if "_nominate" in repr(t.get_coro())]
            assert len(tasks) <= 1, tasks
            before = (session.ufrag, len(env.api.restarts))
            status, headers, _ = await patch(env, location, frag("rlmore", NEW_PWD))
            assert status == 429 and int(headers["Retry-After"]) >= 1
            assert (session.ufrag, len(env.api.restarts)) == before
        finally:
            await peer.close()


def handshake_counter(conn: Any) -> list[int]:
    """Count DTLS handshake records (content type 22) the agent hands up from now on."""
    seen = [0]
    received = conn.data_received

    def data_received(data: bytes, component: int) -> None:
        if data[:1] == b"\x16":
            seen[0] += 1
        received(data, component)

    conn.data_received = data_received
    return seen


def check(sock: socket.socket, to: tuple[str, int], username: str, pwd: str) -> stun.Message:
    """One Binding Request from a raw socket; the answer."""
    req = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    req.attributes["USERNAME"] = username
    req.attributes["PRIORITY"] = 1
    req.attributes["ICE-CONTROLLING"] = 1
    req.add_message_integrity(pwd.encode())
    sock.sendto(bytes(req), to)
    data, _ = sock.recvfrom(2048)
    return stun.parse_message(data)


async def echoes(peer: Peer, n: int) -> None:
    start = len(peer.echoed_messages)
    for i in range(n):
        peer.channel.send(f"m{i}")
    await wait_for(lambda: len(peer.echoed_messages) >= start + n)


async def test_restart_keeps_dtls_and_media_and_retires_the_old_ufrag() -> None:
    async with whip_env(restart_grace=1.0) as env:
        peer = await make_peer()
        try:
            session, location = await connect(env, peer, hide_candidates=True)
            await asyncio.wait_for(peer.opened.wait(), 10)
            await echoes(peer, 3)
            await wait_for(lambda: len(peer.echoed_frames) >= 10)
            server, client = conn_of(session.pc), conn_of(peer.pc)
            dtls = session.pc.getTransceivers()[0].sender.transport
            client_dtls = peer.pc.getTransceivers()[0].sender.transport
            # the DTLS session: its TLS connection and SRTP contexts, by identity
            keys = (dtls._ssl, dtls._rx_srtp, dtls._tx_srtp)
            assert dtls._ssl is not None
            peer_cert = dtls._ssl.get_peer_certificate(as_cryptography=True)
            handshakes = handshake_counter(server), handshake_counter(client)
            old_ufrag, old_pwd = session.ufrag, session.password
            old_client, old_client_pwd = client.local_username, client.local_password
            old_pair = icerestart.selected_pair(server)
            sock = session.sock
            assert sock is not None

            # the client restarts: new credentials both ways through PATCH
            new_client, new_client_pwd = random_string(8), random_string(24)
            started = time.monotonic()
            status, headers, text = await patch(
                env, location, frag(new_client, new_client_pwd), **{"If-Match": "*"}
            )
            assert status == 200, text
            assert headers["Content-Type"].startswith(FRAG)
            answer = sdpfrag.parse(text.encode())
            assert answer.ufrag is not None and answer.pwd is not None
            assert answer.ufrag == session.ufrag != old_ufrag and answer.pwd != old_pwd
            assert headers["ETag"] == f'"{answer.ufrag}"'
            assert answer.end_of_candidates and answer.mid == "0"
            assert [c.split()[4:6] for c in answer.candidates] == [["203.0.113.10", "3478"]]
            # registered before the answer left, on the same socket
            (call,) = env.api.restarts
            assert call.path == f"/v1/sessions/{old_ufrag}/restart"
            assert call.body == {"ufrag": answer.ufrag, "grace": 1.0}
            assert list(env.api.sessions) == [answer.ufrag]
            assert env.api.sessions[answer.ufrag]["sock"] == str(sock)

            # the client applies it (aiortc has no restartIce: the same module does it)
            (line,) = sdpfrag.parse(direct_answer(text, str(sock)).encode()).candidates
            target = Candidate.from_sdp(line[2:].removeprefix("candidate:"))
            client_old_pair = icerestart.begin(
                client,
                local_ufrag=new_client,
                local_pwd=new_client_pwd,
                remote_ufrag=answer.ufrag,
                remote_pwd=answer.pwd,
                remote_candidates=[target],
                grace=1.0,
            )
            await icerestart.nominated(client, client_old_pair, timeout=10)
            await wait_for(lambda: icerestart.selected_pair(server) is not old_pair)
            restarted_ms = (time.monotonic() - started) * 1000

            # media both ways on the new pair, the same DTLS session, no new handshake
            frames = len(peer.echoed_frames)
            await echoes(peer, 1)
            resumed_ms = (time.monotonic() - started) * 1000  # a message there and back
            await echoes(peer, 5)
            await wait_for(lambda: len(peer.echoed_frames) >= frames + 25)
            assert session.pc.getTransceivers()[0].sender.transport is dtls
            assert peer.pc.getTransceivers()[0].sender.transport is client_dtls
            assert dtls.state == client_dtls.state == "connected"
            assert (dtls._ssl, dtls._rx_srtp, dtls._tx_srtp) == keys  # the same objects
            assert keys[0].get_peer_certificate(as_cryptography=True) == peer_cert
            assert handshakes[0] == [0] and handshakes[1] == [0]
            assert server.remote_username == new_client and server.local_username == answer.ufrag
            assert env.metrics.ice_restarts.labels("ok")._value.get() == 1
            print(f"restart: nominated {restarted_ms:.0f} ms, echo back {resumed_ms:.0f} ms")

            # the old credentials: answered during the grace, 401 after it
            raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            raw.settimeout(2)
            raw.bind(("127.0.0.1", 0))
            try:
                to = (str(sock.ip), sock.port)
                user = f"{old_ufrag}:{old_client}"
                if icerestart.previous_ufrag_valid(server):
                    got = await asyncio.to_thread(check, raw, to, user, old_pwd)
                    assert got.message_class == stun.Class.RESPONSE
                await wait_for(lambda: not icerestart.previous_ufrag_valid(server), timeout=3)
                got = await asyncio.to_thread(check, raw, to, user, old_pwd)
                assert got.message_class == stun.Class.ERROR
                assert got.attributes["ERROR-CODE"][0] == 401
                got = await asyncio.to_thread(
                    check, raw, to, f"{answer.ufrag}:{new_client}", answer.pwd
                )
                assert got.message_class == stun.Class.RESPONSE
            finally:
                raw.close()
            assert old_client_pwd  # (the client's old password is the client's business)

            # the session ends under its new ufrag
            resp = await env.http.delete(location)
            assert resp.status == 200
            assert [c.path for c in env.api.deregisters] == [f"/v1/sessions/{answer.ufrag}"]
        finally:
            await peer.close()


async def test_a_sealed_session_restarts_with_a_new_sealed_ufrag(tmp_path: Path) -> None:
    """With --seal-key-file the new ufrag is sealed over the same socket too: any relay
    holding the key routes the client's new checks with no registration of its own."""
    key = seal.new_key(5)  # the fleet's; the transceiver gets backend 7's, derived
    seal.write_key_file(tmp_path / "k.json", seal.backend_key(key, 7))
    async with whip_env(seal_key_file=str(tmp_path / "k.json")) as env:
        peer = await make_peer(audio=False)
        try:
            session, location = await connect(env, peer, hide_candidates=True)
            assert session.sock is not None
            old = session.ufrag
            status, _, text = await patch(env, location, frag("newc", NEW_PWD))
            assert status == 200, text
            new = sdpfrag.parse(text.encode()).ufrag
            assert new is not None and new != old and session.ufrag == new
            for ufrag in (old, new):
                fields = seal.verify({5: key.key}, ufrag)
                assert fields is not None, ufrag
                assert (fields.backend, fields.port) == (7, session.sock.port)
            assert [c.body["ufrag"] for c in env.api.restarts] == [new]
        finally:
            await peer.close()
