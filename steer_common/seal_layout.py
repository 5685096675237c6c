"""The sealed word's layout, the Python side of bpf/steer_shared.h STEER_SEAL_*.

One 64-bit word, most significant field first: backend:12 | port:16 | key id:4 | nonce:32.
A sealed ufrag and a routing CID carry it whole (then its MAC); a sealed transaction id
carries its top 48 bits (a 16-bit nonce). seal.py, cid.py and the replay model
(steer_testkit/replay/model.py) read and build words only through this module;
tests/unit/test_seal_layout.py parses the header's defines and fails when the two disagree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    shift: int
    mask: int

    def get(self, word: int) -> int:
        return (word >> self.shift) & self.mask

    def put(self, value: int) -> int:
        """`value` in its place (callers check ranges: nothing is cut off here)."""
        return value << self.shift


BACKEND = Field(52, 0xFFF)
PORT = Field(36, 0xFFFF)
KEY_ID = Field(32, 0xF)
NONCE = Field(0, 0xFFFFFFFF)
FIELDS = {"BACKEND": BACKEND, "PORT": PORT, "KEY_ID": KEY_ID, "NONCE": NONCE}
# a sealed transaction id's 48-bit word is the sealed word shifted right by this
TXID_SHIFT = 16


def pack(backend: int, port: int, key_id: int, nonce: int) -> int:
    return BACKEND.put(backend) | PORT.put(port) | KEY_ID.put(key_id) | NONCE.put(nonce)


def unpack(word: int) -> tuple[int, int, int, int]:
    """(backend, port, key id, nonce) of a sealed word."""
    return BACKEND.get(word), PORT.get(word), KEY_ID.get(word), NONCE.get(word)


def pack_txid(backend: int, port: int, key_id: int, nonce16: int) -> int:
    """The 48-bit word of a sealed transaction id (its nonce is the top 16 bits' worth)."""
    return pack(backend, port, key_id, nonce16 << TXID_SHIFT) >> TXID_SHIFT


def unpack_txid(word48: int) -> tuple[int, int, int, int]:
    """(backend, port, key id, 16-bit nonce) of a sealed transaction id's word."""
    backend, port, key_id, nonce = unpack(word48 << TXID_SHIFT)
    return backend, port, key_id, nonce >> TXID_SHIFT
