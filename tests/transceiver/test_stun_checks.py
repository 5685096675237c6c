"""The session socket answers STUN checks for our long ufrag, signed with our password,
and refuses everything else: proof that aioice really uses the credentials we set."""

from __future__ import annotations

import asyncio
import re
import socket
import struct

import pytest

from steer_testkit.stun import BINDING_SUCCESS, binding_request
from steer_testkit.transceiver import make_peer, post_offer, whip_env

BINDING_ERROR = 0x0111
ERROR_CODE = 0x0009


async def _check(sock: str, username: str, key: str, txid: bytes) -> tuple[int, bytes]:
    host, _, port = sock.rpartition(":")
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.bind(("127.0.0.1", 0))
    try:
        packet = binding_request(username.encode(), integrity_key=key.encode(), txid=txid)
        await loop.sock_sendto(s, packet, (host, int(port)))
        while True:  # skip the server's own triggered check towards us
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(s, 2048), 5)
            if data[8:20] == txid:
                return struct.unpack("!H", data[:2])[0], data
    finally:
        s.close()


def _error_code(data: bytes) -> int:
    pos = 20
    while pos + 4 <= len(data):
        atype, length = struct.unpack("!HH", data[pos : pos + 4])
        if atype == ERROR_CODE:
            value = data[pos + 4 : pos + 4 + length]
            return value[2] * 100 + value[3]
        pos += 4 + length + (-length % 4)
    raise AssertionError("no ERROR-CODE attribute")


@pytest.mark.parametrize(
    ("who", "expected"),
    [("ours", None), ("short", 401), ("wrong-pwd", 401), ("other-session", 401)],
)
async def test_session_socket_checks(who: str, expected: int | None) -> None:
    async with whip_env() as env:
        peer = await make_peer(audio=False)
        try:
            offer = peer.pc.localDescription.sdp
            status, _, answer = await post_offer(env.http, offer)
        finally:
            await peer.close()
        assert status == 201
        (reg,) = env.api.registers
        ufrag, sock = reg.body["ufrag"], reg.body["sock"]
        (pwd,) = set(re.findall(r"^a=ice-pwd:(\S+)\r$", answer, re.M))
        (client,) = set(re.findall(r"^a=ice-ufrag:(\S+)\r$", offer, re.M))
        username, key = {
            "ours": (f"{ufrag}:{client}", pwd),
            "short": (f"{ufrag[:4]}:{client}", pwd),  # an aioice-default-length ufrag
            "wrong-pwd": (f"{ufrag}:{client}", "x" * 32),
            "other-session": (f"007{'A' * 21}:{client}", pwd),
        }[who]
        msg_type, data = await _check(sock, username, key, txid=b"steer-check1")
        if expected is None:
            assert msg_type == BINDING_SUCCESS
        else:
            assert msg_type == BINDING_ERROR
            assert _error_code(data) == expected
