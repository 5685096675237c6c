"""Live XDP in network namespaces: the lab topology (pyctl/lab/net.py) with the data plane
attached natively or in generic mode (live_relay), UDP sockets and sniffers opened inside
the namespaces, spoofed datagrams and the ICE exchange that proves a client's address."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyctl.dataplane import topology
from pyctl.dataplane.loader import BuildOptions, DataPlane, unload
from pyctl.dataplane.maps import RouteMaps, Session
from pyctl.dataplane.netns import netns
from pyctl.lab.net import CLIENT4, CLIENT6, LabNet, mac
from steer_common.endpoint import Endpoint
from steer_common.shared import BackendState, Reason

ETH_P_ALL = 0x0003


def udp_socket(ns: str, bind: Endpoint) -> socket.socket:
    """A UDP socket that lives in `ns` (a socket keeps the namespace it was made in)."""
    with netns(ns):
        fam = socket.AF_INET if bind.ip.version == 4 else socket.AF_INET6
        s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((str(bind.ip), bind.port))
    s.settimeout(2.0)
    return s


def sniffer(ns: str, ifname: str) -> socket.socket:
    """Every frame `ifname` in `ns` receives, for the no-leak checks."""
    with netns(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((ifname, 0))
    s.setblocking(False)
    return s


def drain(s: socket.socket, seconds: float) -> list[bytes]:
    frames, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            frames.append(s.recv(65535))
        except BlockingIOError:
            time.sleep(0.01)
    return frames


def recv_or_none(s: socket.socket, timeout: float) -> tuple[bytes, tuple] | None:
    s.settimeout(timeout)
    try:
        return s.recvfrom(4096)
    except TimeoutError:
        return None


@dataclass
class LiveRelay:
    net: LabNet
    dp: DataPlane
    maps: RouteMaps
    mode: str

    def trx_sock(self, i: int, port: int, v6: bool = False) -> Endpoint:
        ip = self.net.trx_ip6(i) if v6 else self.net.trx_ip4(i)
        return Endpoint.parse(f"[{ip}]:{port}" if v6 else f"{ip}:{port}")

    def register(self, ufrag: str, sock: Endpoint, backend_id: int = 1) -> None:
        vip = self.net.vips[0] if sock.ip.version == 4 else self.net.vips[1]
        self.maps.add_session(Session(ufrag, sock, vip, backend_id))

    def counters(self) -> dict[Reason, int]:
        return {r: v[0] for r, v in self.maps.stats().items()}

    def reset(self) -> LiveRelay:
        """No session, flow, note, pending check or spent budget left from a test before."""
        for s in self.maps.sessions():
            self.maps.del_session(s.ufrag)
        m = self.maps
        for table in (m.flow_map, m.rflow_map, m.asked_map, m.pending_map, m.sock_budget_map):
            table.clear()
        m.budget_map[m.budget_map.Key(0)] = m.budget_map.Leaf()
        return self


def spoof(relay: LiveRelay, src: Endpoint, dst: Endpoint, payload: bytes) -> None:
    """Put a UDP datagram with any source on the client's wire towards the relay, as a host
    that forges its source address does (built whole, checksums correct)."""
    spoof_many(relay, [(src, dst, payload)])


def spoof_many(relay: LiveRelay, datagrams: list[tuple[Endpoint, Endpoint, bytes]]) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    with netns(relay.net.client):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind(("eth0", 0))
        for src, dst, payload in datagrams:
            l3 = (IP if src.ip.version == 4 else IPv6)(src=str(src.ip), dst=str(dst.ip))
            udp = UDP(sport=src.port, dport=dst.port)
            s.send(bytes(Ether(src=mac(1, 0, 1), dst=mac(2, 0, 1)) / l3 / udp / payload))
    finally:
        s.close()


def exchange(
    relay: LiveRelay, ufrag: str, trx: socket.socket, client: socket.socket, pwd: bytes
) -> None:
    """The ICE exchange that proves a client's address (steer.bpf.c, "Return-routability"),
    at socket level: the client's check reaches the session by its ufrag; the session
    answers it (a tentative flow), checks the client, and the client's Success answer to
    that check (the proof) reaches the session."""
    from aioice import stun

    from steer_testkit import stun as stunb

    vip = relay.net.vips[0 if client.family == socket.AF_INET else 1]
    to_vip = (str(vip.ip), vip.port)
    ask = os.urandom(12)
    client.sendto(
        stunb.binding_request(f"{ufrag}:cli".encode(), integrity_key=pwd, txid=ask), to_vip
    )
    data, src = trx.recvfrom(4096)
    assert data[8:20] == ask, "the client's check did not reach its session"
    ok = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=ask)
    ok.attributes["XOR-MAPPED-ADDRESS"] = src[:2]
    ok.add_message_integrity(pwd)
    trx.sendto(bytes(ok), src[:2])
    assert client.recvfrom(4096)[0][8:20] == ask
    own = os.urandom(12)
    trx.sendto(
        stunb.binding_request(f"cli:{ufrag}".encode(), integrity_key=None, txid=own), src[:2]
    )
    data, _ = client.recvfrom(4096)
    assert data[8:20] == own, "the session's check did not reach the client"
    answer = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=own)
    answer.attributes["XOR-MAPPED-ADDRESS"] = client.getsockname()[:2]
    client.sendto(bytes(answer), to_vip)
    assert trx.recvfrom(4096)[0][8:20] == own, "the client's answer did not reach its session"


@contextmanager
def live_relay(tag: str, mode: str, opts: BuildOptions | None = None) -> Iterator[LiveRelay]:
    """The lab network `tag` with the data plane attached in `mode`, torn down on exit."""
    net = LabNet(prefix=tag, transceivers=2)
    opts = opts or BuildOptions(instance=f"live-{tag}")
    net.down()
    unload(opts.instance)
    try:
        net.up()
        with DataPlane(opts) as dp:
            assert dp.attach("public", "pub", net.relay, mode=mode) == mode
            assert dp.attach("internal", "int", net.relay, mode=mode) == mode
            maps = RouteMaps(dp.bpf)
            for vip in net.vips:
                maps.add_vip(vip)
            maps.set_backend(1, None, BackendState.ACTIVE)
            maps.set_backend(2, None, BackendState.ACTIVE)
            # resolve next hops first, as the daemon does: bpf_fib_lookup answers NO_NEIGH
            # until the kernel knows the neighbour, and those packets take the kernel's path
            hosts = [CLIENT4, CLIENT6] + [
                ip for i in (1, 2) for ip in (net.trx_ip4(i), net.trx_ip6(i))
            ]
            for ip in hosts:
                topology.run_in(net.relay, ["ping", "-c1", "-W1", ip])
            yield LiveRelay(net, dp, maps, mode)
    finally:
        net.down()
        unload(opts.instance)
