"""Server ufrags: fleet-unique, ICE characters, carrying the backend id."""

from __future__ import annotations

import re

import pytest
from aioice.ice import validate_password, validate_username

from steer_common.ufrag import (
    BACKEND_MAX,
    UFRAG_LEN,
    backend_of,
    make_password,
    make_ufrag,
)

ICE = re.compile(r"^[A-Za-z0-9+/]+$")


def test_100k_ufrags_are_unique_and_well_formed() -> None:
    ufrags = [make_ufrag(1 + i % BACKEND_MAX) for i in range(100_000)]
    assert len(set(ufrags)) == len(ufrags)
    assert UFRAG_LEN >= 16
    for u in ufrags:
        assert len(u) == UFRAG_LEN and ICE.match(u), u
    # the random part varies in every position (no stuck character)
    for pos in range(3, UFRAG_LEN):
        assert len({u[pos] for u in ufrags[:5000]}) > 50


@pytest.mark.parametrize("backend", [1, 2, 7, 255, 256, 4094, 4095])
def test_ufrag_carries_backend(backend: int) -> None:
    u = make_ufrag(backend)
    assert u[:3] == f"{backend:03x}"
    assert backend_of(u) == backend
    validate_username(u)  # aioice accepts it


def test_backends_never_share_a_ufrag() -> None:
    # the prefix is a function of the backend: two backends cannot collide
    prefixes = {make_ufrag(b)[:3] for b in range(1, BACKEND_MAX + 1)}
    assert len(prefixes) == BACKEND_MAX


@pytest.mark.parametrize("backend", [0, -1, 4096])
def test_backend_out_of_range(backend: int) -> None:
    with pytest.raises(ValueError, match="backend id must be 1-4095"):
        make_ufrag(backend)


@pytest.mark.parametrize("ufrag", ["abcd", "zzz" + "a" * 21, "007" + "a" * 20 + "!", ""])
def test_backend_of_rejects_foreign_ufrags(ufrag: str) -> None:
    with pytest.raises(ValueError, match="is not a steer server ufrag"):
        backend_of(ufrag)


def test_password_is_strong() -> None:
    pwds = {make_password() for _ in range(1000)}
    assert len(pwds) == 1000
    for p in pwds:
        assert len(p) >= 32 and ICE.match(p)
        validate_password(p)
