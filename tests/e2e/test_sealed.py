"""Sealed ufrags end to end: a lab whose transceivers mint them (--seal-key-file), real
aiortc calls through the relay, a forged sealed ufrag dropped and counted by the live
relay, and a key rotation while calls are up (the live calls keep media both ways, new
calls get the new key's ufrags)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyctl.dataplane.netns import netns
from pyctl.lab.demo import run_clients
from pyctl.lab.lifecycle import Lab
from steer_common import seal
from steer_testkit import stun
from steer_testkit.labs import reason_counts, running

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sealed_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    """One transceiver (backend 1) minting sealed ufrags with its derivation of key 1, which
    the relay holds. The fixture yields the fleet key's file; the transceiver's is beside
    it (`trx_keyfile`)."""
    keydir = tmp_path_factory.mktemp("sealkeys")
    keyfile = keydir / "fleet.json"
    fleet = seal.new_key(1)
    seal.write_key_file(keyfile, fleet)
    seal.write_key_file(trx_keyfile(keyfile), seal.backend_key(fleet, 1))
    lab = Lab(prefix=f"es{os.getpid() % 10000}", transceivers=1, metrics="127.0.0.1:9487", ttl=3)
    with running(lab, env={"STEER_TRX_SEAL_KEY_FILE": str(trx_keyfile(keyfile))}):
        lab.api().request("POST", "/v1/keys", fleet.to_json())
        yield lab, keyfile


def trx_keyfile(fleet_keyfile: Path) -> Path:
    """The transceiver's key file: backend 1's key, derived from the fleet's."""
    return fleet_keyfile.with_name("trx1.json")


def moved(lab: Lab, before: dict[str, int]) -> dict[str, int]:
    after = reason_counts(lab)
    return {k: after[k] - before.get(k, 0) for k in after}


def test_calls_with_sealed_ufrags(sealed_lab: tuple[Lab, Path]) -> None:
    lab, keyfile = sealed_lab
    key = seal.read_key_file(keyfile)
    results = run_clients(lab, sessions=3, seconds=2, hide_candidates=True)
    for r in results:
        assert r["ok"], r
        got = seal.verify({key.id: key.key}, r["ufrag"])
        assert got is not None and got.backend == 1, r["ufrag"]


def test_forged_sealed_ufrag_dropped_by_the_live_relay(sealed_lab: tuple[Lab, Path]) -> None:
    lab, keyfile = sealed_lab
    key = seal.read_key_file(keyfile)
    good = seal.seal_for(key, 1, 40999)
    fields, tag = seal.unseal(good) or (None, 0)
    assert fields is not None
    forged = seal.encode((fields.word << 64) | (tag ^ 1))
    stale = seal.seal(bytes(16), 9, 1, 40999)
    before = reason_counts(lab)
    vip = lab.net.vips[0]
    with netns(lab.net.client):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for u in (forged, forged, stale):
            s.sendto(stun.binding_request(u.encode() + b":x"), (str(vip.ip), vip.port))
        for _ in range(50):  # counters are read over the API: poll until they moved
            d = moved(lab, before)
            if d["drop_seal_bad_mac"] >= 2 and d["drop_seal_stale_key"] >= 1:
                break
            threading.Event().wait(0.1)
    finally:
        s.close()
    d = moved(lab, before)
    assert (d["drop_seal_bad_mac"], d["drop_seal_stale_key"]) == (2, 1), d
    assert d["fwd_stun_sealed"] == 0


def test_key_rotation_with_live_calls(sealed_lab: tuple[Lab, Path]) -> None:
    """docs/fleet.md's procedure while calls are up: the relay takes key 2, transceivers
    mint with it, the relay retires key 1. Live calls keep media both ways throughout."""
    lab, keyfile = sealed_lab
    old = seal.read_key_file(keyfile)
    out: list[dict[str, Any]] = []
    live = threading.Thread(target=lambda: out.extend(run_clients(lab, sessions=3, seconds=8)))
    live.start()
    try:
        deadline = 200
        while not lab.api().sessions() and deadline:  # calls are up once registered
            threading.Event().wait(0.1)
            deadline -= 1
        assert lab.api().sessions(), "no call came up"
        new = seal.new_key(2)
        lab.api().request("POST", "/v1/keys", new.to_json())  # 1. every relay takes key 2
        tmp = keyfile.with_suffix(".new")
        seal.write_key_file(tmp, seal.backend_key(new, 1))  # 2. transceivers mint with
        tmp.replace(trx_keyfile(keyfile))  # theirs (atomic rename, no restart)
        rotated = run_clients(lab, sessions=2, seconds=2)
        lab.api().request("DELETE", f"/v1/keys/{old.id}")  # 3. the old key retires
    finally:
        live.join(timeout=60)
    assert len(out) == 3
    for r in out:
        assert r["ok"], r
        assert seal.verify({old.id: old.key}, r["ufrag"]) is not None
    for r in rotated:
        assert r["ok"], r
        assert seal.verify({new.id: new.key}, r["ufrag"]) is not None
    assert [k["id"] for k in lab.api().request("GET", "/v1/keys")["keys"]] == [2]
