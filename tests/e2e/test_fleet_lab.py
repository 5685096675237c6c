"""The fleet lab (`Lab(relays=3)`, `steerctl lab up --relays 3`): three relays, each its own
namespace and daemon (`--fleet`, one redis-server), behind a router that spreads clients
with ECMP; transceivers reply through any relay. Real aiortc calls on every relay, a session
registered once routable through each relay, a forged sealed ufrag dropped by each, a key
rotation with calls up; then (each kills a relay, so they run last) headless Chromium's
relay killed mid-call, and the busiest relay killed under aiortc calls."""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from pyctl.cli import cli
from pyctl.dataplane import topology
from pyctl.dataplane.netns import netns
from pyctl.lab.demo import run_clients
from pyctl.lab.failover import DC_STALL_BOUND_MS, run_kill
from pyctl.lab.lifecycle import Lab, LabRelay
from steer_common import seal
from steer_common.apiclient import ApiError
from steer_common.paths import instance_lock
from steer_testkit import stun
from steer_testkit.browser import call_page, chromium, relay_event
from steer_testkit.labs import poll, running

pytestmark = pytest.mark.e2e

RELAYS = 3
IP_PKTINFO = 8  # linux/in.h (the socket module has it from Python 3.13)
Counts = dict[str, dict[str, int]]


@pytest.fixture(scope="module")
def fleet() -> Iterator[Lab]:
    lab = Lab(
        prefix=f"ef{os.getpid() % 10000}",
        transceivers=2,
        relays=RELAYS,
        metrics="127.0.0.1:9495",
    )
    with running(lab):
        yield lab
    # down leaves nothing of the relays behind, their daemons' instance locks included
    left = [r.instance for r in lab.relay_list() if instance_lock(r.instance).exists()]
    assert not left, left


def counts(lab: Lab) -> Counts:
    """Every live relay's XDP counters, by relay name."""
    out = {}
    for r in lab.relay_list():
        if r.name in lab.status()["namespaces"]["router"]["ecmp"]:
            reasons = lab.api(r).stats()["reasons"]
            out[r.name] = {k: v["packets"] for k, v in reasons.items()}
    return out


def moved(before: Counts, after: Counts, reason: str) -> dict[str, int]:
    return {n: after[n].get(reason, 0) - before[n].get(reason, 0) for n in before}


def moved_on(lab: Lab, before: Counts, reason: str, relay: str) -> dict[str, int]:
    """`reason`'s change on every relay once it moved on `relay` (or after 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        d = moved(before, counts(lab), reason)
        if d[relay] or time.monotonic() > deadline:
            return d
        time.sleep(0.1)


def vip_hops(lab: Lab) -> set[str]:
    """The relays the router's route to the v4 VIP goes through (its next hops)."""
    route = topology.run_in(lab.fleet_net.router, ["ip", "route", "show", "203.0.113.10"])
    return {f"relay{k}" for k in range(1, RELAYS + 1) if f"via 100.64.{k}.2 " in route.stdout}


def knows(lab: Lab, r: LabRelay, ufrag: str) -> bool:
    """Has relay r the session in its maps (its own, or installed from the fleet)?"""
    try:
        return bool(lab.api(r).request("GET", f"/v1/fleet/sessions/{ufrag}")["known_here"])
    except ApiError as e:
        if e.status == 404:  # no relay knows it yet
            return False
        raise


class Through:
    """A UDP socket in the router namespace whose packets to the VIP take relay r's next
    hop: IP_PKTINFO names r's link as the outgoing interface, so the multipath route picks
    the hop on it. Answers may come back over any relay (any link of the router)."""

    def __init__(self, lab: Lab, r: LabRelay) -> None:
        self.src = lab.fleet_net.pub4(r.index)[0]
        with netns(lab.fleet_net.router):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.ifindex = socket.if_nametoindex(f"r{r.index}")
        self.sock.bind((self.src, 0))
        self.sock.settimeout(3)
        self.vip = lab.net.vips[0]

    def send(self, data: bytes) -> None:
        info = struct.pack("@I4s4s", self.ifindex, socket.inet_aton(self.src), bytes(4))
        anc = [(socket.IPPROTO_IP, IP_PKTINFO, info)]
        self.sock.sendmsg([data], anc, 0, (str(self.vip.ip), self.vip.port))

    def __enter__(self) -> Through:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_status_lists_every_relay_and_the_ecmp_routes(fleet: Lab) -> None:
    """`steerctl lab status --json` (told only the prefix: the lab recorded its shape)."""
    ran = CliRunner().invoke(cli, ["lab", "status", "--prefix", fleet.prefix, "--json"])
    assert ran.exit_code == 0, ran.output
    st = json.loads(ran.output)
    relays = st["relays"]
    assert [r["name"] for r in relays] == ["relay1", "relay2", "relay3"]
    assert len({r["instance"] for r in relays}) == RELAYS
    for r in relays:
        assert r["pid"] and r["alive"], r
        assert topology.netns_exists(r["ns"])
    assert st["processes"]["redis"]
    assert vip_hops(fleet) == {"relay1", "relay2", "relay3"}
    policy = topology.run_in(
        fleet.fleet_net.router, ["sysctl", "-n", "net.ipv4.fib_multipath_hash_policy"]
    )
    assert policy.stdout.strip() == "1"


def test_status_human_table_lists_each_relay_once(fleet: Lab) -> None:
    """The human `steerctl lab status`: a relay's daemon is on its relay line, not also
    among the lab's other processes."""
    ran = CliRunner().invoke(cli, ["lab", "status", "--prefix", fleet.prefix])
    assert ran.exit_code == 0, ran.output
    out = ran.output.splitlines()
    for r in fleet.status()["relays"]:
        mine = [ln for ln in out if f"pid {r['pid']} " in ln + " "]
        assert len(mine) == 1 and mine[0].startswith(r["name"]), ran.output


def test_a_session_registered_once_routes_through_every_relay(fleet: Lab) -> None:
    """Registered on relay1 only; a Binding Request through each relay reaches the
    transceiver's socket, and its answer comes back from the VIP (through whichever relay
    the transceiver's multipath route picks)."""
    ip = fleet.net.trx_ip4(1)
    with netns(fleet.net.trx(1)):
        trx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    trx.bind((ip, 0))
    trx.settimeout(3)
    ufrag = f"fleetlab{os.getpid():08d}reg1"
    relays = fleet.relay_list()
    body = {"ufrag": ufrag, "sock": f"{ip}:{trx.getsockname()[1]}", "backend": 1}
    fleet.api(relays[0]).request("POST", "/v1/sessions", body)
    assert poll(lambda: all(knows(fleet, r, ufrag) for r in relays))
    vip = fleet.net.vips[0]
    try:
        for r in relays:
            before = counts(fleet)
            with Through(fleet, r) as s:
                req = stun.binding_request(
                    f"{ufrag}:peer".encode(), txid=f"relay{r.index}-txid.".encode()
                )
                s.send(req)
                data, src = trx.recvfrom(4096)
                assert data == req and src == s.sock.getsockname(), (r.name, src)
                trx.sendto(b"answer " + req[8:20], src)
                ans, frm = s.sock.recvfrom(4096)
                assert ans == b"answer " + req[8:20] and frm == (str(vip.ip), vip.port), r.name
            d = moved_on(fleet, before, "fwd_stun", r.name)
            assert d == {n: int(n == r.name) for n in before}, (r.name, d)
    finally:
        trx.close()
        fleet.api(relays[0]).request("DELETE", f"/v1/sessions/{ufrag}")


def test_a_forged_sealed_ufrag_is_dropped_by_every_relay(fleet: Lab) -> None:
    key = seal.read_key_file(fleet.seal_key_file)
    fields, tag = seal.unseal(seal.seal_for(key, 1, 40999)) or (None, 0)
    assert fields is not None
    forged = seal.encode((fields.word << 64) | (tag ^ 1))
    for r in fleet.relay_list():
        before = counts(fleet)
        with Through(fleet, r) as s:
            s.send(stun.binding_request(forged.encode() + b":x"))
        d = moved_on(fleet, before, "drop_seal_bad_mac", r.name)
        assert d == {n: int(n == r.name) for n in before}, (r.name, d)
        after = counts(fleet)
        assert moved(before, after, "fwd_stun_sealed") == {n: 0 for n in before}


def test_calls_on_every_relay(fleet: Lab) -> None:
    """ECMP spreads calls by the client's port: rounds of calls until every relay has
    forwarded client media (a round of 6 leaves a relay out ~26 % of the time), each call
    satisfied through the VIP."""
    before = counts(fleet)
    results: list[dict[str, Any]] = []
    for _ in range(4):
        results += run_clients(fleet, sessions=6, seconds=2)
        if all(moved(before, counts(fleet), "fwd_flow").values()):
            break
    assert all(r["ok"] for r in results), [r["error"] for r in results if not r["ok"]]
    flows = moved(before, counts(fleet), "fwd_flow")
    assert all(flows.values()), flows


def test_key_rotation_with_live_calls_on_every_relay(fleet: Lab) -> None:
    """docs/fleet.md's procedure on the fleet: every relay takes key 2, transceivers mint
    with it, every relay retires key 1; live calls keep media throughout."""
    keyfile = fleet.seal_key_file
    old = seal.read_key_file(keyfile)
    relays = fleet.relay_list()
    out: list[dict[str, Any]] = []
    live = threading.Thread(target=lambda: out.extend(run_clients(fleet, sessions=3, seconds=8)))
    live.start()
    try:
        assert poll(lambda: sum(len(fleet.api(r).sessions()) for r in relays) >= 3, 20)
        new = seal.new_key(2)
        for r in relays:
            fleet.api(r).request("POST", "/v1/keys", new.to_json())
        for i in range(1, fleet.transceivers + 1):  # each transceiver gets its derivation
            tmp = fleet.backend_key_file(i).with_suffix(".new")
            seal.write_key_file(tmp, seal.backend_key(new, i))
            tmp.replace(fleet.backend_key_file(i))
        rotated = run_clients(fleet, sessions=3, seconds=2)
        for r in relays:
            fleet.api(r).request("DELETE", f"/v1/keys/{old.id}")
    finally:
        live.join(timeout=60)
    assert len(out) == 3
    for call in out:
        assert call["ok"], call
        assert seal.verify({old.id: old.key}, call["ufrag"]) is not None
    for call in rotated:
        assert call["ok"], call
        assert seal.verify({new.id: new.key}, call["ufrag"]) is not None
    for r in relays:
        assert [k["id"] for k in fleet.api(r).request("GET", "/v1/keys")["keys"]] == [2]


def test_chromium_keeps_its_call_when_its_relay_dies(fleet: Lab) -> None:
    """Headless Chromium in a call through the VIP; the relay its packets go through is
    killed: audio comes back both ways (on the wire), the call stays connected on the same
    ICE credentials and DTLS transport (no restart). Kills one relay: runs late."""
    with chromium(fleet.net.client, call_page(fleet)) as b:
        b.wait_connected()
        got = relay_event(fleet, b, fleet.kill_relay)
        b.evaluate("window.steer.stop()")
    print(f"chromium via {got['relay']}: gaps up {got['gap_up_ms']} down {got['gap_down_ms']} ms")
    assert got["inbound"] > 100 and got["kept"] and got["resumed"], got


def test_a_relay_killed_mid_call(fleet: Lab) -> None:
    """Runs last. The relay carrying the most flows dies while 4 calls carry audio: media
    resumes both ways on every call without an ICE restart; the gaps are measured."""
    alive = len(fleet.fleet_net.alive())
    rows, killed = run_kill(fleet, sessions=4, progress=lambda s: None)
    flows = {name: len(us) for name, us in killed["carried"].items()}
    assert flows[killed["relay"]] == max(flows.values()) > 0, killed
    moved = [r for r in rows if r["relay"] == killed["relay"]]
    assert len(moved) == flows[killed["relay"]], (rows, killed)  # these calls failed over
    assert killed["relay"] not in killed["alive"] and len(killed["alive"]) == alive - 1
    assert vip_hops(fleet) == {f"relay{k}" for k in fleet.fleet_net.alive()}
    assert len(vip_hops(fleet)) == alive - 1
    for r in rows:
        # the call's own check: every data-channel message echoed, the tone back
        assert r["ok"] and r["resumed"] and r["unechoed"] == 0 < r["messages_sent"], r
        assert r["dc_stall_ms"] < DC_STALL_BOUND_MS, r
        print(
            f"{r['ufrag']} via {r['relay']}: gaps up {r['gap_up_ms']} down {r['gap_down_ms']}"
            f" ms, data channel {r['dc_stall_ms']} ms (control {r['control_gap_up_ms']}/"
            f"{r['control_gap_down_ms']}, {r['control_dc_stall_ms']})"
        )
