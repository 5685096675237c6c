"""DTLS connection IDs that route (RFC 9146 tls12_cid records): the reference.

A transceiver's DTLS server chooses the CID its client must send; steer makes it a routing
hint the relay reads with no per-session state: STEER_CID_LEN (16) bytes, the same 128
bits as a sealed ufrag (steer_common/seal.py) in binary, big-endian — the word (backend:12 |
port:16 | key id:4 | nonce:32), then its SipHash-2-4 MAC under the sealing key. The XDP
program (steer.bpf.c dtls_cid) routes a record carrying one from any client address;
steer_testkit/replay/model.py mirrors it.
"""

from __future__ import annotations

import secrets

from steer_common import seal
from steer_common.shared import BACKEND_ID_MAX, BACKEND_ID_MIN

CID_LEN = 16
CID_OFF = 11  # type 1, version 2, epoch 2, sequence number 6
CONTENT_TYPE = 25  # tls12_cid


def mint_for(fleet: seal.SealKey, backend: int, port: int, nonce: int | None = None) -> bytes:
    """A CID minted with the fleet key's derivation for `backend` (tests and tools)."""
    return mint(seal.backend_key(fleet, backend), backend, port, nonce)


def mint(key: seal.SealKey, backend: int, port: int, nonce: int | None = None) -> bytes:
    """A routing CID, under `key`: the backend's own key (seal.backend_key)."""
    if not BACKEND_ID_MIN <= backend <= BACKEND_ID_MAX or not 0 < port < 65536:
        raise ValueError(f"cannot mint a CID for backend {backend}, port {port}")
    nonce = secrets.randbits(32) if nonce is None else nonce
    word = seal.Sealed(backend, port, key.id, nonce).word
    return word.to_bytes(8, "big") + seal.mac(key.key, word).to_bytes(8, "big")


def record(cid: bytes, body: bytes = b"\x17" * 40, epoch: int = 1, seq: int = 7) -> bytes:
    """A DTLS 1.2 tls12_cid record (RFC 9146 §4) carrying `cid` and an opaque body."""
    return (
        bytes([CONTENT_TYPE, 0xFE, 0xFD])
        + epoch.to_bytes(2, "big")
        + seq.to_bytes(6, "big")
        + cid
        + len(body).to_bytes(2, "big")
        + body
    )


def fields(cid: bytes) -> tuple[seal.Sealed, int] | None:
    """(fields, MAC) of a CID of the routing length (not checked), else None."""
    if len(cid) != CID_LEN:
        return None
    word, tag = int.from_bytes(cid[:8], "big"), int.from_bytes(cid[8:], "big")
    return seal.Sealed.of_word(word), tag
