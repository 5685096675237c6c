"""Building STUN messages (RFC 8489) byte by byte, including ones that lie, and reading
the one thing the relay routes by (`server_ufrag`).

Tests need Binding Requests with the attributes in any order, with or without
MESSAGE-INTEGRITY and FINGERPRINT, and with every field wrong on purpose; a small builder
over struct does that more plainly than a full STUN stack. `steerctl explain` and the
benchmarks build theirs here too (`check`).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from dataclasses import dataclass, field

from steer_common.shared import UFRAG_MAX, UFRAG_MIN

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111
BINDING_INDICATION = 0x0011
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
FINGERPRINT = 0x8028
PRIORITY = 0x0024
ICE_CONTROLLING = 0x802A
USE_CANDIDATE = 0x0025
ERROR_CODE = 0x0009
MAX_ATTRS = 64  # bpf/stun.h STEER_STUN_MAX_ATTRS: attributes walked before USERNAME


def attr(atype: int, value: bytes, length: int | None = None) -> bytes:
    """One attribute, padded to 4 bytes; `length` overrides the length field (to lie)."""
    n = len(value) if length is None else length
    pad = b"\0" * (-len(value) % 4)
    return struct.pack("!HH", atype, n) + value + pad


@dataclass
class Message:
    attrs: list[bytes] = field(default_factory=list)
    msg_type: int = BINDING_REQUEST
    txid: bytes = b"steer-txid12"
    cookie: int = MAGIC_COOKIE
    length: int | None = None  # override the header's length field
    trailing: bytes = b""  # bytes after the message inside the datagram

    def __bytes__(self) -> bytes:
        body = b"".join(self.attrs)
        n = len(body) if self.length is None else self.length
        return struct.pack("!HHI", self.msg_type, n, self.cookie) + self.txid + body + self.trailing


def binding_request(
    username: bytes,
    *,
    before: list[bytes] | None = None,
    after: list[bytes] | None = None,
    integrity_key: bytes | None = b"server-pwd-0123456789",
    fingerprint: bool = True,
    txid: bytes = b"steer-txid12",
) -> bytes:
    """A Binding Request shaped like a browser's: USERNAME among PRIORITY and
    ICE-CONTROLLING, then MESSAGE-INTEGRITY and FINGERPRINT computed for real."""
    attrs = list(before or [])
    attrs.append(attr(USERNAME, username))
    attrs += (
        after
        if after is not None
        else [
            attr(PRIORITY, struct.pack("!I", 1853817087)),
            attr(ICE_CONTROLLING, b"\x01\x02\x03\x04\x05\x06\x07\x08"),
        ]
    )
    msg = Message(attrs=attrs, txid=txid)
    if integrity_key is not None:
        # the HMAC covers the header with a length that includes MESSAGE-INTEGRITY itself
        msg.length = len(b"".join(attrs)) + 24
        mac = hmac.new(integrity_key, bytes(msg), hashlib.sha1).digest()
        attrs.append(attr(MESSAGE_INTEGRITY, mac))
        msg.length = None
    if fingerprint:
        msg.length = len(b"".join(attrs)) + 8
        crc = (zlib.crc32(bytes(msg)) ^ 0x5354554E) & 0xFFFFFFFF
        attrs.append(attr(FINGERPRINT, struct.pack("!I", crc)))
        msg.length = None
    return bytes(msg)


def check(ufrag: str, peer: str, txid: bytes, priority: bool = False) -> bytes:
    """A bare connectivity check for `ufrag` (USERNAME "<ufrag>:<peer>", PRIORITY if
    asked), without MESSAGE-INTEGRITY or FINGERPRINT: all the relay reads."""
    extra = [attr(PRIORITY, struct.pack("!I", 1853817087))] if priority else []
    username = f"{ufrag}:{peer}".encode()
    return binding_request(username, after=extra, integrity_key=None, fingerprint=False, txid=txid)


def header(data: bytes) -> tuple[int, bytes] | None:
    """(message type, transaction id) of a datagram that starts with a STUN header (RFC
    7983's first byte 0-3, the magic cookie, a length within the data); None otherwise."""
    if len(data) < 20 or data[0] > 3:
        return None
    msg_type, length, cookie = struct.unpack_from("!HHI", data)
    if cookie != MAGIC_COOKIE or length & 3 or 20 + length > len(data):
        return None
    return msg_type, data[8:20]


class StunError(ValueError):
    """Not a Binding Request the relay can route; the message says what is wrong."""


def server_ufrag(data: bytes) -> str:
    """The server's ufrag (USERNAME before ':') of the Binding Request `data`, read with
    bpf/stun.h's rules (stun_header, stun_server_ufrag): header well formed, at most
    MAX_ATTRS attributes walked, none past the message, ufrag UFRAG_MIN-UFRAG_MAX bytes
    without NUL. Anything else is StunError. The ICE-TCP relay (pyctl/tcp) routes the
    first frame of a connection with it, as XDP routes a datagram."""
    if len(data) < 20:
        raise StunError(f"{len(data)} bytes: shorter than a STUN header")
    msg_type, length, cookie = struct.unpack_from("!HHI", data)
    if cookie != MAGIC_COOKIE:
        raise StunError("no STUN magic cookie")
    if length & 3 or 20 + length > len(data):
        raise StunError(f"STUN length {length}: not a multiple of 4 or past the data")
    if msg_type != BINDING_REQUEST:
        raise StunError(f"STUN type {msg_type:#06x}: not a Binding Request")
    end, off = 20 + length, 20
    for _ in range(MAX_ATTRS):
        if off + 4 > end:
            break
        atype, alen = struct.unpack_from("!HH", data, off)
        if off + 4 + alen > end:
            raise StunError(f"attribute {atype:#06x} runs past the message")
        if atype == USERNAME:
            value = data[off + 4 : off + 4 + alen]
            ufrag, colon, _ = value.partition(b":")
            if not colon or not UFRAG_MIN <= len(ufrag) <= UFRAG_MAX or b"\0" in ufrag:
                raise StunError(
                    f"USERNAME {value[:40]!r}: no server ufrag of {UFRAG_MIN}-"
                    f"{UFRAG_MAX} bytes before ':'"
                )
            return ufrag.decode("latin-1")
        off += 4 + ((alen + 3) & ~3)
    raise StunError(f"no USERNAME within the first {MAX_ATTRS} attributes")
