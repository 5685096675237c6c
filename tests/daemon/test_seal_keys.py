"""Sealed-ufrag keys through the live daemon: `steerctl key gen|add|list|del` and
/v1/keys (operator only, at most two valid, keys from files), and real packets from the
lab's client: a sealed Binding Request reaches its transceiver socket with no session
registered, a forged one is dropped and counted, and a rotation keeps the new key's
ufrags routed while the retired one's are dropped."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyctl.lab.net import VIP4
from steer_common import seal
from steer_common.endpoint import Endpoint
from steer_common.shared import Reason
from steer_testkit import stun
from steer_testkit.daemon import Env, add_backend, steerctl
from steer_testkit.traffic import addr, udp

pytestmark = pytest.mark.netns


@pytest.fixture
def keyed(clean: Env) -> Iterator[Env]:
    yield clean
    for k in seal.valid_keys(clean.maps.vip_map.bpf[b"steer_seal_keys"]):
        clean.http.call("DELETE", f"/v1/keys/{k.id}")


def gen(env: Env, tmp: Path, kid: int) -> tuple[Path, seal.SealKey]:
    path = tmp / f"key{kid}.json"
    r = steerctl(env, "key", "gen", str(kid), str(path))
    assert r.exit_code == 0, r.output
    return path, seal.read_key_file(path)


def binding(ufrag: str) -> bytes:
    return stun.binding_request(ufrag.encode() + b":cli1")


def test_key_commands_and_refusals(keyed: Env, tmp_path: Path) -> None:
    env = keyed
    p1, k1 = gen(env, tmp_path, 1)
    assert stat.S_IMODE(os.stat(p1).st_mode) == 0o600
    again = steerctl(env, "key", "gen", "1", str(p1))
    assert again.exit_code == 1 and "never overwritten" in again.output
    assert seal.read_key_file(p1) == k1
    r = steerctl(env, "key", "add", str(p1))
    assert r.exit_code == 0 and k1.fingerprint() in r.output, r.output
    r = steerctl(env, "key", "list", "--json")
    assert r.exit_code == 0
    assert r.output.count(k1.fingerprint()) == 1 and k1.key.hex() not in r.output
    table = steerctl(env, "key", "list").output.splitlines()
    assert table[0].split() == ["ID", "FINGERPRINT"] and table[1].split() == ["1", k1.fingerprint()]
    # the same key again: a no-op; the same id with another key: refused
    assert env.http.call("POST", "/v1/keys", k1.to_json())[0] == 200
    other = seal.SealKey(1, bytes(16)).to_json()
    assert env.http.call("POST", "/v1/keys", other)[0] == 409
    p2, k2 = gen(env, tmp_path, 2)
    assert steerctl(env, "key", "add", str(p2)).exit_code == 0
    _, k3 = gen(env, tmp_path, 3)
    status, body = env.http.call("POST", "/v1/keys", k3.to_json())
    assert status == 409 and "retire" in body["error"]
    for bad in ({"id": 16, "key": "00" * 16}, {"id": 1, "key": "zz" * 16}, {"id": 1}, [1]):
        assert env.http.call("POST", "/v1/keys", bad)[0] == 400
    got = {k.id: k.key for k in seal.valid_keys(env.maps.vip_map.bpf[b"steer_seal_keys"])}
    assert got == {1: k1.key, 2: k2.key}
    assert steerctl(env, "key", "del", "1").exit_code == 0
    r = steerctl(env, "key", "del", "1")
    assert r.exit_code == 1 and "not valid" in r.output
    got = {k.id: k.key for k in seal.valid_keys(env.maps.vip_map.bpf[b"steer_seal_keys"])}
    assert got == {2: k2.key}


def test_key_file_readable_by_others_is_refused(keyed: Env, tmp_path: Path) -> None:
    path, _ = gen(keyed, tmp_path, 4)
    path.chmod(0o644)
    r = steerctl(keyed, "key", "add", str(path))
    assert r.exit_code == 1 and "chmod 600" in r.output
    assert seal.valid_keys(keyed.maps.vip_map.bpf[b"steer_seal_keys"]) == []


def test_sealed_ufrags_route_live_and_rotate(keyed: Env, tmp_path: Path) -> None:
    """No session registered anywhere: only the ufrag names the socket."""
    env = keyed
    add_backend(env, 1, env.net.trx_ip4(1))
    trx_ep = env.trx_sock(1, 41777)
    trx = udp(env.net.trx(1), trx_ep)
    client = udp(env.net.client, env.client_ep(42777))
    p1, k1 = gen(env, tmp_path, 1)
    p2, k2 = gen(env, tmp_path, 2)
    assert steerctl(env, "key", "add", str(p1)).exit_code == 0
    old = seal.seal_for(k1, 1, trx_ep.port)
    new = seal.seal_for(k2, 1, trx_ep.port)
    forged = old[:-1] + ("0" if old[-1] != "0" else "1")

    def reaches(ufrag: str) -> bool:
        msg = binding(ufrag)
        client.sendto(msg, addr(VIP4))
        trx.settimeout(0.5)
        try:
            data, src = trx.recvfrom(2048)
        except TimeoutError:
            return False
        assert data == msg and Endpoint.parse(f"{src[0]}:{src[1]}") == env.client_ep(42777)
        return True

    def counted(reason: Reason) -> int:
        return env.maps.stats()[reason][0]

    before = {r: counted(r) for r in Reason}
    assert reaches(old)
    assert not reaches(forged)
    assert not reaches(new)  # key 2 not valid yet
    assert env.maps.sessions() == [] and env.maps.flows() == []
    assert steerctl(env, "key", "add", str(p2)).exit_code == 0
    assert reaches(old) and reaches(new)  # both valid during the rotation
    assert steerctl(env, "key", "del", "1").exit_code == 0
    assert not reaches(old) and reaches(new)
    delta = {r: counted(r) - before[r] for r in Reason}
    assert delta[Reason.FWD_STUN_SEALED] == 4
    assert delta[Reason.DROP_SEAL_BAD_MAC] == 1
    assert delta[Reason.DROP_SEAL_STALE_KEY] == 2
