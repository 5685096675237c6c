"""steer_common.stun.server_ufrag, the ICE-TCP relay's reader of a connection's first
frame: the ufrag of what XDP would route, StunError for everything XDP would drop, and the
same answer as the C's step-by-step mirror (steer_testkit/replay/model.py) on each case."""

from __future__ import annotations

import struct

import pytest

from steer_common import stun
from steer_common.shared import Reason
from steer_testkit.replay.model import stun_header, stun_ufrag

pytestmark = pytest.mark.unit

UFRAG = b"001abcdefghijklmnopqrstu"
GOOD = stun.binding_request(UFRAG + b":clnt")
BIG = stun.attr(0xC002, b"\x5a" * 1200)  # SPED-sized, USERNAME after it

ROUTED = {
    "browser_shaped": GOOD,
    "bare": stun.check(UFRAG.decode(), "c", b"t" * 12),
    "username_after_big_attr": stun.binding_request(UFRAG + b":c", before=[BIG]),
    "shortest_ufrag": stun.binding_request(b"abcd:c"),
    "longest_ufrag": stun.binding_request(b"a" * 32 + b":c"),
    "trailing_bytes": bytes(stun.Message([stun.attr(stun.USERNAME, UFRAG + b":c")], trailing=b"x")),
}
REFUSED = {
    "empty": (b"", "shorter than a STUN header"),
    "garbage": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "no STUN magic cookie"),
    "dtls_first": (bytes([22, 0xFE, 0xFD]) + b"\0" * 30, "no STUN magic cookie"),
    "bad_cookie": (
        bytes(stun.Message([stun.attr(stun.USERNAME, UFRAG + b":c")], cookie=1)),
        "cookie",
    ),
    "length_past_end": (
        bytes(stun.Message([stun.attr(stun.USERNAME, UFRAG + b":c")], length=400)),
        "past the data",
    ),
    "length_not_4n": (
        bytes(stun.Message([stun.attr(stun.USERNAME, UFRAG + b":c")], length=18)),
        "multiple of 4",
    ),
    "success_not_request": (
        bytes(
            stun.Message([stun.attr(stun.USERNAME, UFRAG + b":c")], msg_type=stun.BINDING_SUCCESS)
        ),
        "not a Binding Request",
    ),
    "attr_lies_past_end": (
        bytes(stun.Message([stun.attr(stun.USERNAME, UFRAG + b":c", length=200)])),
        "runs past",
    ),
    "no_username": (
        stun.binding_request(UFRAG, before=[], after=[]).replace(b"\x00\x06", b"\x00\x07", 1),
        "no USERNAME",
    ),
    "no_colon": (stun.binding_request(UFRAG), "before ':'"),
    "ufrag_too_short": (stun.binding_request(b"abc:c"), "before ':'"),
    "ufrag_too_long": (stun.binding_request(b"a" * 33 + b":c"), "before ':'"),
    "nul_in_ufrag": (stun.binding_request(b"abc\0defg:c"), "before ':'"),
    "username_beyond_64_attrs": (
        stun.binding_request(UFRAG + b":c", before=[stun.attr(0x8022, b"")] * 64),
        "first 64 attributes",
    ),
}


@pytest.mark.parametrize("name", sorted(ROUTED))
def test_routed_ufrag_is_the_part_before_the_colon(name: str) -> None:
    data = ROUTED[name]
    want = data.split(b"\x00\x06", 1)[1][2:].split(b":", 1)[0].decode()
    assert stun.server_ufrag(data) == want
    header = stun_header(data)
    assert header is not None and stun_ufrag(data, header[2]) == want.encode()


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_xdp_drops_is_refused_with_its_reason(name: str) -> None:
    data, message = REFUSED[name]
    with pytest.raises(stun.StunError, match=message):
        stun.server_ufrag(data)
    header = stun_header(data)
    if header is not None and header[0] == stun.BINDING_REQUEST:  # the C mirror agrees
        assert stun_ufrag(data, header[2]) == Reason.DROP_STUN_MALFORMED


def test_every_truncation_of_a_check_is_refused_or_routed_the_same() -> None:
    """No prefix of a real check crashes the reader or yields another ufrag."""
    for n in range(len(GOOD)):
        try:
            got = stun.server_ufrag(GOOD[:n])
        except stun.StunError:
            continue
        assert got == UFRAG.decode()
    assert struct.unpack_from("!H", GOOD, 2)[0] + 20 == len(GOOD)
