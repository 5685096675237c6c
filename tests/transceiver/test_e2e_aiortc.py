"""A real aiortc client against the transceiver, without the relay.

The test stands in for the relay by pointing the answer's VIP candidate at the session
socket the transceiver registered, and (in one variant) by hiding the client's own
candidates so the transceiver must accept it as peer-reflexive, as behind the relay.
"""

from __future__ import annotations

import asyncio
import re

import aioice.ice
import numpy as np
import pytest
from aiortc import RTCSessionDescription

from steer_common.ufrag import UFRAG_LEN
from steer_testkit.transceiver import (
    connect,
    direct_answer,
    make_peer,
    post_offer,
    strip_candidates,
    wait_for,
    whip_env,
)
from transceiver import ice

MESSAGES: list[str | bytes] = ["hello", b"\x00\x01\xfe\xff" * 64, "ünïcødé ✓", b"x" * 4000]


@pytest.mark.parametrize("hide_candidates", [True, False], ids=["prflx", "host"])
async def test_echo_audio_and_messages(hide_candidates: bool, stun_usernames: list[str]) -> None:
    async with whip_env() as env:
        peer = await make_peer()
        try:
            session, location = await connect(env, peer, hide_candidates=hide_candidates)

            # the checks that got the client in carried our long ufrag
            ours = [u for u in stun_usernames if u.startswith(session.ufrag + ":")]
            assert ours, stun_usernames
            assert len(session.ufrag) == UFRAG_LEN >= 16
            client_ufrag = ice.connection_of(ice.ice_transports(peer.pc)[0]).local_username
            assert f"{session.ufrag}:{client_ufrag}" in stun_usernames

            remote = session.client_candidate()
            assert remote is not None
            expected_type = "prflx" if hide_candidates else "host"
            assert remote[0] == expected_type and remote[1] == "127.0.0.1"

            await asyncio.wait_for(peer.opened.wait(), 10)
            for m in MESSAGES:
                peer.channel.send(m)
            await wait_for(lambda: len(peer.echoed_messages) == len(MESSAGES))
            assert peer.echoed_messages == MESSAGES  # byte-exact, in order, types kept

            await wait_for(lambda: len(peer.echoed_frames) >= 25)  # >= 0.5 s of echo
            pcm = np.concatenate([f.to_ndarray().ravel() for f in peer.echoed_frames[-10:]])
            assert np.abs(pcm.astype(np.float64)).mean() > 1000, "echo must carry the tone"

            resp = await env.http.delete(location)
            assert resp.status == 200
            assert [c.path for c in env.api.deregisters] == [f"/v1/sessions/{session.ufrag}"]
            assert session.end_reason == "delete"
            assert env.server.sessions == {}
            assert session.pc.connectionState == "closed"
        finally:
            await peer.close()
        assert len(env.api.deregisters) == 1  # exactly once, also after the client closed


async def test_idle_timeout_deregisters() -> None:
    async with whip_env(idle_timeout=1.0) as env:
        peer = await make_peer()
        try:
            status, _, _ = await post_offer(env.http, peer.pc.localDescription.sdp)
            assert status == 201
            (session,) = env.server.sessions.values()
            # the client never applies the answer: no ICE, no media
            await asyncio.wait_for(session.ended.wait(), 5)
            assert session.end_reason == "idle_timeout"
            assert [c.path for c in env.api.deregisters] == [f"/v1/sessions/{session.ufrag}"]
            assert env.api.sessions == {}
            assert env.server.sessions == {}
            assert (
                env.metrics.registry.get_sample_value(
                    "steer_trx_session_failures_total", {"reason": "setup_timeout"}
                )
                == 1
            )
        finally:
            await peer.close()


async def test_ice_failure_deregisters(monkeypatch: pytest.MonkeyPatch) -> None:
    # consent freshness (RFC 7675) at 0.1 s instead of 5 s, so a vanished client is
    # detected in about 6 x (0.1 + 0.5) s
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.1)
    async with whip_env() as env:
        peer = await make_peer(audio=False)
        try:
            session, _ = await connect(env, peer, hide_candidates=True)
            # the client vanishes without a word: its socket closes, no DTLS alert
            conn = ice.connection_of(ice.ice_transports(peer.pc)[0])
            for protocol in conn._protocols:
                protocol.transport.close()
            await asyncio.wait_for(session.ended.wait(), 15)
            assert session.end_reason == "ice_failed"
            assert [c.path for c in env.api.deregisters] == [f"/v1/sessions/{session.ufrag}"]
            assert (
                env.metrics.registry.get_sample_value(
                    "steer_trx_session_failures_total", {"reason": "ice_failed"}
                )
                == 1
            )
        finally:
            await peer.close()
        assert len(env.api.deregisters) == 1


async def test_peer_close_deregisters() -> None:
    async with whip_env() as env:
        peer = await make_peer(audio=False)
        try:
            session, _ = await connect(env, peer, hide_candidates=True)
            await asyncio.wait_for(peer.opened.wait(), 10)
        finally:
            await peer.close()  # no DELETE: only the DTLS close_notify tells the server
        await asyncio.wait_for(session.ended.wait(), 10)
        assert session.end_reason == "closed"
        assert [c.path for c in env.api.deregisters] == [f"/v1/sessions/{session.ufrag}"]


async def test_dtls_failure_deregisters() -> None:
    async with whip_env() as env:
        peer = await make_peer(audio=False)
        try:
            # the offer's fingerprints no longer match the client's certificate
            offer = re.sub(
                r"^(a=fingerprint:.*)(.)\r$",
                lambda m: m[1] + ("1" if m[2] == "0" else "0") + "\r",
                peer.pc.localDescription.sdp,
                flags=re.M,
            )
            assert offer.count("a=fingerprint:") == 3
            assert set(offer.splitlines()).isdisjoint(
                line for line in peer.pc.localDescription.sdp.splitlines() if "fingerprint" in line
            )
            status, _, answer = await post_offer(env.http, strip_candidates(offer))
            assert status == 201
            (reg,) = env.api.registers
            await peer.pc.setRemoteDescription(
                RTCSessionDescription(direct_answer(answer, reg.body["sock"]), "answer")
            )
            (session,) = env.server.sessions.values()
            await asyncio.wait_for(session.ended.wait(), 15)
            assert session.connected.is_set()  # ICE worked; DTLS did not
            assert session.end_reason == "dtls_failed"
            assert [c.path for c in env.api.deregisters] == [f"/v1/sessions/{session.ufrag}"]
            assert (
                env.metrics.registry.get_sample_value(
                    "steer_trx_session_failures_total", {"reason": "dtls_failed"}
                )
                == 1
            )
        finally:
            await peer.close()
