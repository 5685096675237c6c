"""Signatures on what relays keep in and send through Redis (docs/fleet.md, "Trust").

With an operator token (the same on every relay of a fleet), every fleet message, flow
list, session hash entry and liveness value is signed with HMAC-SHA256 under a key derived
from the token; a relay with the key drops and counts what is unsigned or badly signed. A
relay without a token trusts Redis.
"""

from __future__ import annotations

import hashlib
import hmac

SIG = b"s1 "  # a signed message: SIG, 64 hex digits, a space, the JSON


def fleet_key(token: str) -> bytes | None:
    """The key fleet messages are signed with: derived from the operator token (the
    relays of a fleet share it), so no second secret is needed. None without a token."""
    if not token:
        return None
    return hmac.new(token.encode(), b"steer fleet messages v1", hashlib.sha256).digest()


def sign(key: bytes | None, raw: bytes) -> bytes:
    if key is None:
        return raw
    return SIG + hmac.new(key, raw, hashlib.sha256).hexdigest().encode() + b" " + raw


def unsign(key: bytes | None, data: bytes) -> bytes | None:
    """The JSON of a message, or None if this relay has a key and the message is not
    signed with it (a relay without a key trusts Redis: docs/fleet.md)."""
    if not data.startswith(SIG):
        return None if key is not None else data
    mac, _, raw = data[len(SIG) :].partition(b" ")
    if key is None:
        return raw
    good = hmac.new(key, raw, hashlib.sha256).hexdigest().encode()
    return raw if hmac.compare_digest(mac, good) else None
