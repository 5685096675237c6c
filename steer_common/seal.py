"""Sealed ufrags: a server ufrag that routes itself, on any relay, with no shared state.

A sealed ufrag carries the session's backend id and socket port plus a keyed MAC over
them, so a relay that never heard of the session can still steer its first Binding
Request: the XDP program (bpf/seal.h) decodes the ufrag, checks the MAC with the key the
ufrag names (steer_seal_keys) and sends the packet to port `port` on the address
steer_backends holds for `backend`. Forged or stale ufrags cost one SipHash and are
dropped and counted.

Layout (128 bits, big-endian), 26 characters of base32hex in lower case ("0-9a-v": a
subset of ICE's ice-char that is also safe in URL paths and file names; the first
character is 0-7 because 26 x 5 = 130 bits carry two leading zero bits):

    word = backend:12 | port:16 | key id:4 | nonce:32      (64 bits; seal_layout.py)
    mac  = SipHash-2-4(backend key, word as 8 little-endian bytes)  (64 bits)

Each backend has a key of its own, derived from the fleet's key (`backend_key`): the
relays hold the fleet keys (steer_seal_keys) and derive; a transceiver holds only its
backend's (`steerctl key derive`), so a leaked transceiver key mints for that backend
alone, never for another backend's address.

The nonce makes every ufrag unique (a reused socket port gets a new ufrag). Sixteen key
ids exist so rotation never reuses one that might still be in flight; at most two keys
are valid at once (the one minting and the one before it, see docs/fleet.md).
This module is the reference for the C and the minting code of the transceiver.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steer_common import seal_layout
from steer_common.shared import BACKEND_ID_MAX, BACKEND_ID_MIN

SEALED_LEN = 26
ALPHABET = "0123456789abcdefghijklmnopqrstuv"  # base32hex, lower case: ice-char and URL-safe
KEY_IDS = range(16)
KEY_BYTES = 16
MAX_VALID_KEYS = 2
MASK64 = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & MASK64


def _sipround(v: list[int]) -> None:
    v[0] = (v[0] + v[1]) & MASK64
    v[1] = _rotl(v[1], 13) ^ v[0]
    v[0] = _rotl(v[0], 32)
    v[2] = (v[2] + v[3]) & MASK64
    v[3] = _rotl(v[3], 16) ^ v[2]
    v[0] = (v[0] + v[3]) & MASK64
    v[3] = _rotl(v[3], 21) ^ v[0]
    v[2] = (v[2] + v[1]) & MASK64
    v[1] = _rotl(v[1], 17) ^ v[2]
    v[2] = _rotl(v[2], 32)


def siphash24(key: bytes, msg: bytes) -> int:
    """SipHash-2-4 (Aumasson & Bernstein), 64-bit output, any message length."""
    if len(key) != KEY_BYTES:
        raise ValueError("SipHash keys are 16 bytes")
    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    v = [
        k0 ^ 0x736F6D6570736575,
        k1 ^ 0x646F72616E646F6D,
        k0 ^ 0x6C7967656E657261,
        k1 ^ 0x7465646279746573,
    ]
    tail = len(msg) % 8
    blocks = [int.from_bytes(msg[i : i + 8], "little") for i in range(0, len(msg) - tail, 8)]
    last = ((len(msg) & 0xFF) << 56) | int.from_bytes(msg[len(msg) - tail :], "little")
    for m in [*blocks, last]:
        v[3] ^= m
        _sipround(v)
        _sipround(v)
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(4):
        _sipround(v)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


@dataclass(frozen=True)
class Sealed:
    backend: int
    port: int
    key_id: int
    nonce: int

    @property
    def word(self) -> int:
        return seal_layout.pack(self.backend, self.port, self.key_id, self.nonce)

    @classmethod
    def of_word(cls, word: int) -> Sealed:
        """The fields of a sealed word (seal_layout: bpf/steer_shared.h STEER_SEAL_*)."""
        return cls(*seal_layout.unpack(word))


KDF_DOMAIN = 0x7374656572 << 24  # "steer", then the backend id and half: a domain apart


def derive_key(fleet: bytes, backend: int) -> bytes:
    """bpf/seal.h seal_backend_key: two SipHash-2-4 outputs of the fleet key, over the
    backend id in a domain of their own."""
    halves = [
        siphash24(
            fleet,
            (KDF_DOMAIN | ((backend & seal_layout.BACKEND.mask) << 1) | i).to_bytes(8, "little"),
        )
        for i in (0, 1)
    ]
    return halves[0].to_bytes(8, "little") + halves[1].to_bytes(8, "little")


def backend_key(fleet: SealKey, backend: int) -> SealKey:
    """The key backend `backend` seals with, derived from the fleet's (same key id)."""
    if not BACKEND_ID_MIN <= backend <= BACKEND_ID_MAX:
        raise ValueError(f"no backend {backend}")
    return SealKey(fleet.id, derive_key(fleet.key, backend))


def seal_for(fleet: SealKey, backend: int, port: int, nonce: int | None = None) -> str:
    """A sealed ufrag minted with the fleet key's derivation for `backend` (tests, tools:
    a transceiver mints with its backend key, `seal`)."""
    return seal(backend_key(fleet, backend).key, fleet.id, backend, port, nonce)


def mac(key: bytes, word: int) -> int:
    return siphash24(key, word.to_bytes(8, "little"))


def encode(value: int) -> str:
    """A 128-bit value as SEALED_LEN base32hex characters, most significant first."""
    return "".join(ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(SEALED_LEN)))


def seal(key: bytes, key_id: int, backend: int, port: int, nonce: int | None = None) -> str:
    valid = BACKEND_ID_MIN <= backend <= BACKEND_ID_MAX and 0 < port < 65536
    if not valid or key_id not in KEY_IDS:
        raise ValueError(f"cannot seal backend {backend}, port {port}, key id {key_id}")
    nonce = secrets.randbits(32) if nonce is None else nonce
    word = Sealed(backend, port, key_id, nonce).word
    return encode((word << 64) | mac(key, word))


def unseal(ufrag: str) -> tuple[Sealed, int] | None:
    """(fields, MAC) of anything shaped like a sealed ufrag, or None (not checked)."""
    if len(ufrag) != SEALED_LEN or ufrag[0] not in ALPHABET[:8]:
        return None
    value = 0
    for c in ufrag:
        d = ALPHABET.find(c)
        if d < 0:
            return None
        value = (value << 5) | d
    word, tag = value >> 64, value & MASK64
    return Sealed.of_word(word), tag


def verify(keys: dict[int, bytes], ufrag: str) -> Sealed | None:
    """The fields of a sealed ufrag whose MAC checks out under its key id's derivation for
    its backend (`keys`: fleet keys, by id), else None."""
    got = unseal(ufrag)
    if got is None or got[0].key_id not in keys:
        return None
    fields, tag = got
    if not BACKEND_ID_MIN <= fields.backend <= BACKEND_ID_MAX:
        return None
    bkey = backend_key(SealKey(fields.key_id, keys[fields.key_id]), fields.backend)
    return fields if mac(bkey.key, fields.word) == tag else None


# -- sealed transaction ids (bpf/seal.h txid_tag): a transceiver's own checks, provable on
# any relay with the key. 96 bits: word48 = backend:12 | port:16 | key id:4 | nonce:16
# (big-endian), then the top 48 bits of SipHash-2-4(key, word48 as 8 little-endian bytes ||
# the client's address as struct steer_addr || 4 zero bytes).


def _client_bytes(ip: bytes, port: int) -> bytes:
    """struct steer_addr: 16 address bytes (IPv4 in the first 4), port (network order),
    family (4 or 6), pad."""
    family = 4 if len(ip) == 4 else 6
    return ip.ljust(16, b"\0") + port.to_bytes(2, "big") + bytes([family, 0])


def txid_tag(key: bytes, word48: int, ip: bytes, port: int) -> int:
    msg = word48.to_bytes(8, "little") + _client_bytes(ip, port) + bytes(4)
    return siphash24(key, msg) >> 16


def seal_txid(
    key: bytes, key_id: int, backend: int, port: int, client_ip: bytes, client_port: int,
    nonce: int | None = None,
) -> bytes:  # fmt: skip
    """The transaction id of a check from socket `port` of `backend` to the client."""
    valid = BACKEND_ID_MIN <= backend <= BACKEND_ID_MAX and 0 < port < 65536
    if not valid or key_id not in KEY_IDS:
        raise ValueError(f"cannot seal backend {backend}, port {port}, key id {key_id}")
    nonce = secrets.randbits(16) if nonce is None else nonce
    word = seal_layout.pack_txid(backend, port, key_id, nonce)
    tag = txid_tag(key, word, client_ip, client_port)
    return word.to_bytes(6, "big") + tag.to_bytes(6, "big")


def unseal_txid(txid: bytes) -> tuple[int, int, int, int, int]:
    """(backend, port, key id, word48, tag) of a transaction id read as sealed."""
    word, tag = int.from_bytes(txid[:6], "big"), int.from_bytes(txid[6:12], "big")
    backend, port, key_id, _ = seal_layout.unpack_txid(word)
    return backend, port, key_id, word, tag


# -- key files: {"id": N, "key": "<32 hex digits>"}; read from a file, never from argv


class KeyFileError(ValueError):
    pass


@dataclass(frozen=True)
class SealKey:
    id: int
    key: bytes

    def fingerprint(self) -> str:
        """What listings show instead of the key: 8 hex digits of its MAC of zero."""
        return f"{mac(self.key, 0) & 0xFFFFFFFF:08x}"

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "key": self.key.hex()}


def parse_key(obj: object) -> SealKey:
    if not isinstance(obj, dict) or set(obj) != {"id", "key"}:
        raise KeyFileError('a seal key is {"id": 0-15, "key": "<32 hex digits>"}')
    kid, hexkey = obj["id"], obj["key"]
    if not isinstance(kid, int) or isinstance(kid, bool) or kid not in KEY_IDS:
        raise KeyFileError(f"key id must be an integer 0-15, got {kid!r}")
    if not isinstance(hexkey, str) or len(hexkey) != 2 * KEY_BYTES:
        raise KeyFileError("key must be 32 hex digits (16 bytes)")
    try:
        key = bytes.fromhex(hexkey)
    except ValueError:
        raise KeyFileError("key must be 32 hex digits (16 bytes)") from None
    return SealKey(kid, key)


def read_key_file(path: str | Path) -> SealKey:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise KeyFileError(f"{p}: {e.strerror}") from None
    if p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{p}: readable by others; chmod 600 it")
    try:
        return parse_key(json.loads(text))
    except json.JSONDecodeError as e:
        raise KeyFileError(f"{p}: not JSON ({e})") from None


def write_key_file(path: str | Path, key: SealKey) -> None:
    """Creates `path` mode 0600 (refuses to overwrite: a key is never silently replaced)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(key.to_json(), f)
        f.write("\n")


def new_key(key_id: int) -> SealKey:
    if key_id not in KEY_IDS:
        raise KeyFileError(f"key id must be 0-15, got {key_id}")
    return SealKey(key_id, secrets.token_bytes(KEY_BYTES))


# -- steer_seal_keys (the map the XDP program reads)


def install_key(table: Any, key: SealKey) -> None:
    leaf = table.Leaf()
    leaf.k0 = int.from_bytes(key.key[:8], "little")
    leaf.k1 = int.from_bytes(key.key[8:], "little")
    leaf.valid = 1
    table[table.Key(key.id)] = leaf


def retire_key(table: Any, key_id: int) -> None:
    table[table.Key(key_id)] = table.Leaf()  # all zero: not valid, key bytes gone


def valid_keys(table: Any) -> list[SealKey]:
    out = []
    for kid in KEY_IDS:
        v = table[table.Key(kid)]
        if v.valid:
            out.append(SealKey(kid, v.k0.to_bytes(8, "little") + v.k1.to_bytes(8, "little")))
    return out
