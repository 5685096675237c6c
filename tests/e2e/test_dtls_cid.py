"""Real DTLS connection-ID peers through the relay, across the client's address change.

tests/interop/cid/cidpeer (mbedTLS with RFC 9146 CIDs, built by scripts/cidpeer.sh) runs
as the server in a transceiver namespace of a `--nat` lab, on a registered session socket,
its CID minted by steer_common/cid.py (backend, port, check bits under a seal key the relay
has); the client runs in the client namespace behind the NAT. As a WebRTC device would, the
client checks first (a STUN Binding Request routed by the session's ufrag; the server's
authenticated answer gives the client its flow), then handshakes through the VIP and sends
numbered messages the server echoes. Mid-run the NAT drops its mappings (new port) or the
client moves to another subnet (new address): its records then come from an address with
no flow, and only the CID gets them to the server (fwd_dtls_cid); the server, which
follows the latest authenticated record's source (RFC 9146 §6), answers there.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyctl.lab.lifecycle import Lab
from steer_common import cid, seal
from steer_common.ufrag import make_password
from steer_testkit.labs import reason_counts, running

pytestmark = pytest.mark.e2e

CIDPEER = Path(__file__).resolve().parents[1] / "interop" / "cid" / "cidpeer"
PORT = 47811  # the server's socket on trx1 (the transceiver's own are ephemeral)
CLIENT_CID = "c11e47c1"  # what the server sends to the client (the client chooses it)
MESSAGES, INTERVAL_MS = 150, 20  # 3 s of messages
KEY_ID = 3
# records sent while the change happens (the move takes the old address away first) or in
# flight through the old mapping: 8 x 20 ms
SLACK = 8


class Peer:
    """A cidpeer process and its JSON events, read on a thread."""

    def __init__(self, ns: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, str(CIDPEER), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self._new: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                ev = json.loads(line)
                self.events.append(ev)
                self._new.put(ev)

    def wait(self, match: Callable[[dict[str, Any]], bool], timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for ev in list(self.events):
            if match(ev):
                return ev
        while (left := deadline - time.monotonic()) > 0:
            try:
                ev = self._new.get(timeout=left)
            except queue.Empty:
                break
            if match(ev):
                return ev
            assert ev["event"] != "error", ev
        raise AssertionError(f"no such event; got {self.events[-5:]}")

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def cidlab() -> Iterator[tuple[Lab, seal.SealKey]]:
    assert CIDPEER.exists(), "scripts/setup.sh builds it (scripts/cidpeer.sh)"
    lab_ = Lab(
        prefix=f"cid{os.getpid() % 10000}",
        transceivers=1,
        metrics="127.0.0.1:9497",
        nat=True,
    )
    with running(lab_):
        key = seal.new_key(KEY_ID)
        lab_.api().request("POST", "/v1/keys", key.to_json())
        yield lab_, key


def _call(lab: Lab, key: seal.SealKey, change: Callable[[], str], port: int) -> dict[str, Any]:
    """One CID session across `change()` (which returns the client's new public address)."""
    trx_ip = lab.net.trx_ip4(1)
    # a sealed ufrag: its nonce is the one the session's routing CIDs carry (a CID routes
    # only to the live session registered with it, steer.bpf.c dtls_cid)
    ufrag, pwd = seal.seal_for(key, 1, port), make_password()
    lab.api().add_session(ufrag=ufrag, sock=f"{trx_ip}:{port}", backend=1, ttl=120)
    nonce = seal.unseal(ufrag)[0].nonce  # type: ignore[index]
    server_cid = cid.mint_for(key, 1, port, nonce=nonce).hex()
    vip = lab.net.vips[0]
    server = Peer(lab.net.trx(1), "server", trx_ip, str(port), ufrag, pwd, server_cid, "30")
    client = None
    try:
        server.wait(lambda e: e["event"] == "listening")  # bound: the client may start
        client = Peer(
            lab.net.client,
            *("client", str(vip.ip), str(vip.port), ufrag, pwd, CLIENT_CID),
            *(str(MESSAGES), str(INTERVAL_MS)),
        )
        hs = client.wait(lambda e: e["event"] == "handshake")
        client.wait(lambda e: e["event"] == "echo" and e["n"] >= 20)
        before = reason_counts(lab)
        echoed_before = len(client.of("echo"))
        new_public = change()
        done = client.wait(lambda e: e["event"] == "done", timeout=30)
        after = reason_counts(lab)
        served = server.wait(lambda e: e["event"] == "done", timeout=40)
        moved = server.of("moved")[-1]  # (a move may show two new sources in turn)
        return {
            "handshake": hs,
            "server_handshake": server.of("handshake")[0],
            "done": done,
            "moved": moved,
            "served": served,
            "new_public": new_public,
            "echoed_after": done["echoed"] - echoed_before,
            "sent_after": done["sent"] - echoed_before,
            "delta": {k: after.get(k, 0) - before.get(k, 0) for k in after},
            "server_cid": server_cid,
        }
    finally:
        if client is not None:
            client.stop()
        server.stop()
        lab.api().del_session(ufrag)


def _rebind(lab: Lab) -> Callable[[], str]:
    def change() -> str:
        assert lab.nat_box.rebind() > 0
        return lab.nat_box.public_address()

    return change


@pytest.mark.parametrize("how", ["rebind", "move"])
def test_cid_records_follow_the_client(cidlab: tuple[Lab, seal.SealKey], how: str) -> None:
    lab, key = cidlab
    box = lab.nat_box
    change = _rebind(lab) if how == "rebind" else box.move
    try:
        r = _call(lab, key, change, PORT + (how == "move"))
    finally:
        if how == "move":
            box.move()  # back, for whatever runs next
    hs, done, d = r["handshake"], r["done"], r["delta"]
    # the CIDs each side chose, as negotiated by mbedTLS: steer's routing CID upstream
    assert hs["cid_enabled"] == 1 and hs["cid_out"] == r["server_cid"], hs
    assert r["server_handshake"]["cid_out"] == CLIENT_CID
    # the server saw an authenticated record from the new public address and follows it
    host = r["moved"]["to"].rpartition(":")[0]
    assert host == r["new_public"] and r["moved"]["from"] != r["moved"]["to"], r["moved"]
    # what the server got from the new address came by its CID (that address has no flow)
    assert r["served"]["moves"] >= 1 and r["served"]["records_since_move"] >= 100, r["served"]
    assert d["fwd_dtls_cid"] >= r["served"]["records_since_move"], (d, r["served"])
    assert d.get("drop_dtls_cid_forged", 0) == d.get("drop_dtls_cid_malformed", 0) == 0
    assert d.get("drop_dtls_no_flow", 0) == 0
    # and the echoes came back both ways: at most the records of the change itself lost
    assert done["sent"] == MESSAGES
    # (the lab runs the ICE-TCP component too: its VIP route once made the kernel drop the
    # return path's neighbour-resolving packets as martians, pass_fib_failed for them all)
    verdicts = {k: v for k, v in d.items() if v}
    assert r["echoed_after"] >= r["sent_after"] - SLACK, (
        r["echoed_after"],
        r["sent_after"],
        verdicts,
    )
    assert done["bytes_echoed"] >= done["bytes_sent"] - SLACK * len(f"cid message {MESSAGES}")
