"""Server ICE credentials that are unique across the fleet and name their backend.

The relay routes a client's first Binding Request by the server ufrag alone, so two live
sessions anywhere behind one VIP must never share one. A ufrag is the backend id as three
hex digits (so an operator, or a relay log line, can tell the owner at a glance) followed
by 21 random letters and digits (125 bits): collisions between backends are impossible,
within one backend negligible, and the daemon refuses the rare one anyway (409).

Letters and digits are a subset of ICE's ice-char (which adds '+' and '/'); leaving those
two out keeps ufrags safe in URL paths (``DELETE /v1/sessions/{ufrag}``), file names and
log lines. The password keeps the full alphabet: it never leaves the SDP.
"""

from __future__ import annotations

import re
import secrets
import string

from steer_common import seal
from steer_common.shared import BACKEND_ID_MAX, BACKEND_ID_MIN, ICE_CHARS, UFRAG_MAX, UFRAG_MIN

ICE_ALPHABET = "".join(sorted(ICE_CHARS))  # RFC 8445 section 15.4
UFRAG_ALPHABET = string.ascii_letters + string.digits

BACKEND_MIN, BACKEND_MAX = BACKEND_ID_MIN, BACKEND_ID_MAX  # three hex digits
PREFIX_LEN = 3
RANDOM_LEN = 21  # 62**21 ~ 2**125
UFRAG_LEN = PREFIX_LEN + RANDOM_LEN  # 24: >= 16, and within the relay's 32-byte key
PASSWORD_LEN = 32  # 192 bits; ICE requires >= 22 characters (128 bits)


def check_ufrag(ufrag: str) -> str:
    """The ufrag if the relay can route it (RFC 8839 ice-chars, 4-32 long), else ValueError.
    Any such ufrag can be registered; the ones made here are a subset."""
    if not UFRAG_MIN <= len(ufrag) <= UFRAG_MAX:
        raise ValueError(f"ufrag {ufrag!r}: length must be {UFRAG_MIN}-{UFRAG_MAX}")
    if not set(ufrag) <= ICE_CHARS:
        raise ValueError(f"ufrag {ufrag!r}: only letters, digits, '+' and '/' are allowed")
    return ufrag


def backend_prefix(backend: int) -> str:
    if not BACKEND_MIN <= backend <= BACKEND_MAX:
        raise ValueError(f"backend id must be {BACKEND_MIN}-{BACKEND_MAX}, got {backend}")
    return f"{backend:03x}"


def make_ufrag(backend: int) -> str:
    return backend_prefix(backend) + "".join(
        secrets.choice(UFRAG_ALPHABET) for _ in range(RANDOM_LEN)
    )


def make_password() -> str:
    return "".join(secrets.choice(ICE_ALPHABET) for _ in range(PASSWORD_LEN))


def backend_of(ufrag: str) -> int:
    """The backend id carried by a ufrag made by :func:`make_ufrag`, or by a sealed one
    (steer_common/seal.py: the backend is in its word, readable without the key)."""
    sealed = seal.unseal(ufrag)
    if sealed is not None and BACKEND_MIN <= sealed[0].backend <= BACKEND_MAX:
        return sealed[0].backend
    prefix = ufrag[:PREFIX_LEN]
    if (
        len(ufrag) != UFRAG_LEN
        or not set(ufrag) <= ICE_CHARS
        or not re.match(r"^[0-9a-f]{3}$", prefix)
    ):
        raise ValueError(f"{ufrag!r} is not a steer server ufrag")
    return int(prefix, 16)
