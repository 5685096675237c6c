"""WHIP as RFC 9725 describes it, header by header: what a client reads from each answer."""

from __future__ import annotations

import pytest

from steer_testkit.transceiver import VIP, make_peer, post_offer, whip_env
from transceiver.config import TrxConfig
from transceiver.iceservers import links
from transceiver.sdp import answer_ufrags

TURN = "turn:turn.example.net:3478?transport=udp"


async def test_201_carries_location_etag_and_sdp() -> None:
    async with whip_env() as env:
        peer = await make_peer(audio=False)
        try:
            resp = await env.http.post(
                "/whip",
                data=peer.pc.localDescription.sdp.encode(),
                headers={"Content-Type": "application/sdp"},
            )
            answer = await resp.text()
        finally:
            await peer.close()
        assert resp.status == 201, answer
        assert resp.headers["Content-Type"] == "application/sdp"
        (session,) = env.server.sessions.values()
        assert resp.headers["Location"] == f"/whip/{session.resource}"
        # the entity-tag names the ICE session (section 4.3.1): its ufrag, quoted
        (ufrag,) = answer_ufrags(answer)
        assert resp.headers["ETag"] == f'"{ufrag}"'
        assert "Link" not in resp.headers  # no ICE server configured, none announced
        # one fingerprint per section, sha-256 as browsers send: libdatachannel checked a
        # sha-512 one against a sha-256 digest when ICE beat its answer (transceiver/dtls.py)
        fingerprints = [ln for ln in answer.splitlines() if ln.startswith("a=fingerprint:")]
        assert len(fingerprints) == 1 and fingerprints[0].startswith("a=fingerprint:sha-256 ")


async def test_ice_servers_are_announced_as_link_headers() -> None:
    servers = ("stun:stun.example.net:3478", TURN)
    async with whip_env(ice_servers=servers, ice_username="u1", ice_credential="s3cr3t") as env:
        peer = await make_peer(audio=False)
        try:
            status, _, _ = await post_offer(env.http, peer.pc.localDescription.sdp)
            resp = await env.http.post(
                "/whip",
                data=peer.pc.localDescription.sdp.encode(),
                headers={"Content-Type": "application/sdp"},
            )
        finally:
            await peer.close()
        assert status == 201 and resp.status == 201
        assert resp.headers.getall("Link") == [
            '<stun:stun.example.net:3478>; rel="ice-server"',
            f'<{TURN}>; rel="ice-server"; username="u1"; credential="s3cr3t";'
            ' credential-type="password"',
        ]


async def test_415_says_what_it_accepts() -> None:
    async with whip_env() as env:
        resp = await env.http.post(
            "/whip", data=b"{}", headers={"Content-Type": "application/json"}
        )
        assert resp.status == 415
        assert resp.headers["Accept-Post"] == "application/sdp"
        assert resp.headers["Content-Type"].startswith("text/plain")
        assert "offer must be application/sdp, got application/json" in await resp.text()


async def test_other_methods_are_405_with_allow() -> None:
    async with whip_env() as env:
        resp = await env.http.get("/whip")
        assert resp.status == 405
        assert set(resp.headers["Allow"].split(",")) >= {"POST", "OPTIONS"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ice_servers": ("http://example.net",)}, "expected stun:, stuns:, turn: or turns:"),
        ({"ice_servers": ("stun:",)}, "expected stun:"),
        ({"ice_servers": ('stun:a>"b',)}, "expected stun:"),
        ({"ice_servers": (TURN,)}, "TURN needs --ice-username and --ice-credential"),
        (
            {"ice_servers": (TURN,), "ice_username": 'a"b', "ice_credential": "x"},
            "--ice-username must not contain quotes",
        ),
    ],
    ids=["scheme", "empty", "injection", "turn-no-auth", "quote"],
)
def test_bad_ice_servers_are_refused(kwargs: dict[str, object], message: str) -> None:
    base = {"bind_ip": "127.0.0.1", "vips": (VIP,), "backend": 1, "api_socket": "/x"}
    with pytest.raises(ValueError, match=message):
        TrxConfig(**base, **kwargs)  # type: ignore[arg-type]


def test_stun_links_carry_no_credentials() -> None:
    assert links(["stuns:s.example.net"], "u", "p") == ['<stuns:s.example.net>; rel="ice-server"']


def test_cli_refuses_a_turn_server_without_credentials() -> None:
    from click.testing import CliRunner

    from transceiver.cli import command

    args = ["--bind-ip", "127.0.0.1", "--vip", str(VIP), "--backend-id", "1"]
    result = CliRunner().invoke(command, [*args, "--ice-server", TURN])
    assert result.exit_code == 2
    assert "TURN needs --ice-username and --ice-credential" in result.output
