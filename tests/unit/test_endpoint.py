"""Endpoint parsing and ufrag validation: every bad input gets a specific message."""

from __future__ import annotations

import re

import pytest

from steer_common.endpoint import Endpoint
from steer_common.ufrag import check_ufrag

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("203.0.113.10:3478", "203.0.113.10:3478"),
        ("[2001:DB8::1]:3478", "[2001:db8::1]:3478"),
        (" 10.0.0.1:1 ", "10.0.0.1:1"),
        ("[::ffff:10.0.0.1]:65535", "[::ffff:a00:1]:65535"),
    ],
)
def test_parse_roundtrip(text: str, canonical: str) -> None:
    ep = Endpoint.parse(text)
    assert str(ep) == canonical
    assert Endpoint.parse(str(ep)) == ep
    # the daemon's cheap cut of the address agrees with parsing, for what str() writes
    assert Endpoint.host_of(str(ep)) == str(ep.ip)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.1", "expected IP:PORT"),
        ("2001:db8::1:3478", "expected IP:PORT"),
        ("[2001:db8::1]3478", "expected [IPv6]:PORT"),
        ("host:80", "not an IP address"),
        ("10.0.0.1:0", "port must be 1-65535"),
        ("10.0.0.1:65536", "port must be 1-65535"),
        ("10.0.0.1:x", "port must be 1-65535"),
        ("", "expected IP:PORT"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Endpoint.parse(text)


def test_sort_key_orders_across_families() -> None:
    eps = [Endpoint.parse(s) for s in ("[::1]:1", "10.0.0.2:1", "10.0.0.1:2", "10.0.0.1:1")]
    assert [str(e) for e in sorted(eps, key=Endpoint.sort_key)] == [
        "10.0.0.1:1",
        "10.0.0.1:2",
        "10.0.0.2:1",
        "[::1]:1",
    ]


@pytest.mark.parametrize("ufrag", ["abcd", "A" * 32, "a+b/c0123"])
def test_ufrag_ok(ufrag: str) -> None:
    assert check_ufrag(ufrag) == ufrag


@pytest.mark.parametrize(
    ("ufrag", "message"),
    [
        ("abc", "length must be 4-32"),
        ("A" * 33, "length must be 4-32"),
        ("abc:d", "only letters"),
        ("abcd\0", "only letters"),
        ("abcdé", "only letters"),
    ],
)
def test_ufrag_bad(ufrag: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_ufrag(ufrag)
