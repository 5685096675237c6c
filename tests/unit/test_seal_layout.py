"""steer_common/seal_layout.py must say what bpf/steer_shared.h STEER_SEAL_* says, so the
sealed word's layout cannot drift between the XDP program and the Python that mints and
models it."""

from __future__ import annotations

import re

import pytest

from steer_common import cid, seal, seal_layout, shared

pytestmark = pytest.mark.unit


def c_defines(prefix: str) -> dict[str, int]:
    text = shared.SHARED_HEADER.read_text()
    found = re.findall(rf"^#define {prefix}(\w+)\s+\(?(0x[0-9a-fA-F]+|\d+)[uUlL]*\)?", text, re.M)
    return {name: int(value, 0) for name, value in found}


def test_fields_match_the_header() -> None:
    c = c_defines("STEER_SEAL_")
    for name, f in seal_layout.FIELDS.items():
        assert c.pop(f"{name}_SHIFT") == f.shift, name
        assert c.pop(f"{name}_MASK") == f.mask, name
    assert c.pop("TXID_SHIFT") == seal_layout.TXID_SHIFT
    assert not {k for k in c if k.endswith(("_SHIFT", "_MASK"))}, "a field Python lacks"


def test_fields_tile_64_bits() -> None:
    covered = 0
    for f in seal_layout.FIELDS.values():
        bits = f.mask << f.shift
        assert f.mask & (f.mask + 1) == 0, "masks are contiguous low bits"
        assert covered & bits == 0, "fields overlap"
        covered |= bits
    assert covered == (1 << 64) - 1
    # the transaction id keeps every field but the nonce's low bits
    assert seal_layout.NONCE.mask.bit_length() > seal_layout.TXID_SHIFT


def test_round_trips() -> None:
    fields = (0xABC, 0xFEDC, 0x9, 0x43218765)
    word = seal_layout.pack(*fields)
    assert seal_layout.unpack(word) == fields
    assert seal.Sealed.of_word(word) == seal.Sealed(*fields)
    got = cid.fields(word.to_bytes(8, "big") + bytes(8))
    assert got is not None and got[0].word == word
    w48 = seal_layout.pack_txid(0xABC, 0xFEDC, 0x9, 0x4321)
    assert w48 == word >> seal_layout.TXID_SHIFT
    assert seal_layout.unpack_txid(w48) == (0xABC, 0xFEDC, 0x9, 0x4321)
    txid = seal.seal_txid(bytes(16), 0x9, 0xABC, 0xFEDC, b"\x0a\0\0\1", 5000, nonce=0x4321)
    assert seal.unseal_txid(txid)[:4] == (0xABC, 0xFEDC, 0x9, w48)
