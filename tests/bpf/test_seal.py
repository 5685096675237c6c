"""Sealed ufrags (bpf/seal.h) through BPF_PROG_TEST_RUN, each case also through the
reference model: a valid one routes with no session registered; a wrong MAC, a key id
that is not (or no longer) valid, a truncated one and one outside the charset are dropped
and counted, and create nothing."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from pyctl.daemon.control import ip_endpoint
from pyctl.dataplane.maps import Session
from steer_common import seal
from steer_common.endpoint import Endpoint
from steer_common.shared import BackendState, Reason, XdpAction
from steer_testkit.replay import env, model
from steer_testkit.replay.cases import base, req
from steer_testkit.replay.frames import checksums_valid, client_to_vip, steered_to
from steer_testkit.replay.harness import Replay
from steer_testkit.replay.seeds import model_state

pytestmark = pytest.mark.bpf

KEY_A = seal.SealKey(1, bytes.fromhex("000102030405060708090a0b0c0d0e0f"))
KEY_B = seal.SealKey(2, bytes.fromhex("f0e1d2c3b4a5968778695a4b3c2d1e0f"))
PORT = 40123  # no session registered on it: only the ufrag can route there
SOCK = Endpoint(env.TRX1.ip, PORT)


def sealed(key: seal.SealKey = KEY_A, backend: int = 1, port: int = PORT, kid: int = -1) -> str:
    bkey = seal.derive_key(key.key, backend)  # the backend's key (seal.backend_key)
    return seal.seal(bkey, key.id if kid < 0 else kid, backend, port, nonce=0x1234)


def flip(u: str, i: int) -> str:
    """`u` with character i replaced by another valid one (so only the MAC breaks)."""
    c = seal.ALPHABET[(seal.ALPHABET.index(u[i]) + 1) % (8 if i == 0 else 32)]
    return u[:i] + c + u[i + 1 :]


Setup = Callable[[Replay], None]


def keys(*ks: seal.SealKey) -> Setup:
    def setup(r: Replay) -> None:
        for k in ks:
            seal.install_key(r.dp.table("steer_seal_keys"), k)

    return setup


def backend_at(backend_id: int, ip: str | None, state: BackendState = BackendState.ACTIVE) -> Setup:
    def setup(r: Replay) -> None:
        r.maps.set_backend(backend_id, ip_endpoint(ip), state)

    return setup


@dataclass
class SealCase:
    name: str
    ufrag: str
    reason: Reason
    setup: tuple[Setup, ...] = (keys(KEY_A), backend_at(1, "10.88.0.11"))
    client: Endpoint = env.CLIENT4
    to: Endpoint | None = None  # where a forwarded one goes

    def __str__(self) -> str:
        return self.name


A = sealed()
CASES = [
    SealCase("valid", A, Reason.FWD_STUN_SEALED, to=SOCK),
    SealCase(
        "valid_other_backend",
        sealed(backend=2, port=4000),
        Reason.FWD_STUN_SEALED,
        setup=(keys(KEY_A), backend_at(2, "10.88.0.12")),
        to=Endpoint(env.TRX2.ip, 4000),
    ),
    SealCase(
        "both_keys_valid_old",
        A,
        Reason.FWD_STUN_SEALED,
        setup=(keys(KEY_A, KEY_B), backend_at(1, "10.88.0.11")),
        to=SOCK,
    ),
    SealCase(
        "both_keys_valid_new",
        sealed(KEY_B),
        Reason.FWD_STUN_SEALED,
        setup=(keys(KEY_A, KEY_B), backend_at(1, "10.88.0.11")),
        to=SOCK,
    ),
    SealCase("wrong_mac_last_char", flip(A, 25), Reason.DROP_SEAL_BAD_MAC),
    SealCase("wrong_mac_port_changed", flip(A, 7), Reason.DROP_SEAL_BAD_MAC),
    SealCase("wrong_mac_backend_changed", flip(A, 1), Reason.DROP_SEAL_BAD_MAC),
    SealCase("wrong_key_same_id", sealed(seal.SealKey(1, bytes(16))), Reason.DROP_SEAL_BAD_MAC),
    SealCase("key_id_not_installed", sealed(KEY_B), Reason.DROP_SEAL_STALE_KEY),
    SealCase(
        "key_id_retired",
        A,
        Reason.DROP_SEAL_STALE_KEY,
        setup=(
            keys(KEY_A),
            backend_at(1, "10.88.0.11"),
            lambda r: seal.retire_key(r.dp.table("steer_seal_keys"), 1),
        ),
    ),
    SealCase("key_id_rewritten_to_valid_one", sealed(KEY_B, kid=1), Reason.DROP_SEAL_BAD_MAC),
    SealCase("truncated_25", A[:25], Reason.DROP_STUN_UNKNOWN_UFRAG),
    SealCase("extended_27", A + "0", Reason.DROP_STUN_UNKNOWN_UFRAG),
    SealCase("charset_upper", A[:5] + "W" + A[6:], Reason.DROP_STUN_UNKNOWN_UFRAG),
    SealCase("charset_w", A[:9] + "w" + A[10:], Reason.DROP_STUN_UNKNOWN_UFRAG),
    SealCase("charset_plus", A[:3] + "+" + A[4:], Reason.DROP_STUN_UNKNOWN_UFRAG),
    SealCase("charset_slash_at_8", A[:8] + "/" + A[9:], Reason.DROP_STUN_UNKNOWN_UFRAG),
    SealCase("charset_backtick_at_16", A[:16] + "`" + A[17:], Reason.DROP_STUN_UNKNOWN_UFRAG),
    SealCase("charset_colon_like_at_23", A[:23] + ";" + A[24:], Reason.DROP_STUN_UNKNOWN_UFRAG),
    SealCase("charset_w_at_24", A[:24] + "w" + A[25:], Reason.DROP_STUN_UNKNOWN_UFRAG),
    SealCase("charset_non_ascii_at_25", A[:25] + "\xb0", Reason.DROP_STUN_UNKNOWN_UFRAG),
    SealCase("charset_non_ascii_at_0", "\xb0" + A[1:], Reason.DROP_STUN_UNKNOWN_UFRAG),
    SealCase("first_char_over_7", "8" + A[1:], Reason.DROP_STUN_UNKNOWN_UFRAG),
    SealCase(
        "backend_without_address",
        A,
        Reason.DROP_SEAL_NO_BACKEND,
        setup=(keys(KEY_A), backend_at(1, None)),
    ),
    SealCase(
        "backend_down",
        A,
        Reason.DROP_BACKEND_DOWN,
        setup=(keys(KEY_A), backend_at(1, "10.88.0.11", BackendState.DOWN)),
    ),
    SealCase(
        "backend_family_mismatch",
        A,
        Reason.DROP_FAMILY_MISMATCH,
        setup=(keys(KEY_A), backend_at(1, "fd00:88::b")),
    ),
    SealCase(
        "v6_client_v6_backend",
        A,
        Reason.FWD_STUN_SEALED,
        setup=(keys(KEY_A), backend_at(1, "fd00:88::b")),
        client=env.CLIENT6,
        to=Endpoint.parse(f"[fd00:88::b]:{PORT}"),
    ),
]


def _prepare(replay: Replay, case: SealCase) -> model.State:
    replay.maps.clear()
    base(replay)
    table = replay.dp.table("steer_seal_keys")
    for kid in seal.KEY_IDS:
        seal.retire_key(table, kid)
    for setup in case.setup:
        setup(replay)
    return model_state(replay)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_sealed_ufrag(replay: Replay, case: SealCase) -> None:
    st = _prepare(replay, case)
    payload = req(case.ufrag.encode("latin-1") + b":cli1")
    frame = bytes(client_to_vip(payload, client=case.client))
    v = replay.run("public", frame)
    assert v.reason == case.reason, v.reason.name
    if case.to is not None:
        assert v.action == XdpAction.REDIRECT
        assert v.data == bytes(steered_to(case.to, payload, client=case.client))
        assert checksums_valid(v.data)
    else:
        assert v.action == XdpAction.DROP and v.data == frame
    assert replay.maps.flows() == [] and len(replay.maps.pending_map) == 0, "no state"
    assert model.run("public", frame, st) == (v.action, v.reason, v.data), "model disagrees"


def test_registered_session_wins_over_seal(replay: Replay) -> None:
    """A sealed ufrag some session registered goes where the registration says."""
    case = CASES[0]
    _prepare(replay, case)
    replay.maps.add_session(Session(A, env.TRX2, env.VIP4, 2))
    payload = req(A.encode() + b":cli1")
    v = replay.run("public", bytes(client_to_vip(payload)))
    assert (v.action, v.reason) == (XdpAction.REDIRECT, Reason.FWD_STUN)
    assert v.data == bytes(steered_to(env.TRX2, payload))


def test_reference_vectors() -> None:
    """SipHash-2-4 against the paper's vectors (key 00..0f, message 00..len-1)."""
    k = bytes(range(16))
    assert seal.siphash24(k, b"") == 0x726FDB47DD0E0E31
    assert seal.siphash24(k, bytes(range(8))) == 0x93F5F5799A932462
    assert seal.siphash24(k, bytes(range(15))) == 0xA129CA6149BE45E5


def test_roundtrip_and_charset() -> None:
    for backend, port in ((1, 1), (4095, 65535), (0x123, 40001)):
        u = seal.seal_for(KEY_A, backend, port)
        assert len(u) == seal.SEALED_LEN and set(u) <= set(seal.ALPHABET) and u[0] <= "7"
        got = seal.verify({1: KEY_A.key}, u)
        assert got is not None and (got.backend, got.port, got.key_id) == (backend, port, 1)
        assert seal.verify({1: KEY_B.key}, u) is None


def test_random_sealed_ufrags_route_to_their_port(replay: Replay) -> None:
    """The kernel's decoding against the reference for 200 random backends, ports, nonces
    (every bit position of the packed word exercised)."""
    rng = random.Random(12)
    _prepare(replay, CASES[0])
    replay.maps.set_backend(4095, ip_endpoint("10.88.0.12"), BackendState.ACTIVE)
    for _ in range(200):
        backend = rng.choice((1, 4095))
        port, nonce = rng.randrange(1024, 65536), rng.getrandbits(32)  # the sealed range
        u = seal.seal_for(KEY_A, backend, port, nonce)
        payload = req(u.encode() + b":c")
        v = replay.run("public", bytes(client_to_vip(payload)))
        ip = env.TRX1.ip if backend == 1 else env.TRX2.ip
        assert v.reason == Reason.FWD_STUN_SEALED, (u, v.reason.name)
        assert v.data == bytes(steered_to(Endpoint(ip, port), payload)), u
        bad = flip(u, rng.randrange(26))
        assert replay.run("public", bytes(client_to_vip(req(bad.encode() + b":c")))).reason in (
            Reason.DROP_SEAL_BAD_MAC,
            Reason.DROP_SEAL_STALE_KEY,  # the flip hit the key id
        )
