"""The second wall (pyctl/daemon/firewall.py), live.

Alone: on a lab relay with the XDP programs detached, or replaced by a program that passes
everything, the nftables table by itself keeps the public side from reaching internal
addresses (fragments, TCP) and internal addresses from reaching clients (TCP, ICMP, UDP),
with the signaling port as the one exception. Each case first runs without the table, to
show the attack does cross when nothing stops it. With the daemon: the table comes with
the instance, stays and is adopted across a restart, and goes with `steerctl unload`.
"""

from __future__ import annotations

import os
import signal
import socket
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from scapy.layers.inet import TCP
from scapy.layers.l2 import Ether

from pyctl.cli import cli
from pyctl.daemon import firewall
from pyctl.dataplane import topology
from pyctl.dataplane.loader import XDP_MODES, detach
from pyctl.dataplane.netns import netns
from pyctl.lab.net import CLIENT4, RELAY_INT4, RELAY_PUB4, VIP4, LabNet
from pyctl.tcp.relay import listener as tcp_listener
from steer_common.endpoint import Endpoint
from steer_testkit.daemon import Daemon, cleanup, free_port, make_lab
from steer_testkit.live import sniffer, udp_socket
from steer_testkit.packets import frames_until, internal_addrs, src_of

pytestmark = pytest.mark.netns

PASS_ALL = "int pass_all(struct xdp_md *ctx) { return XDP_PASS; }"


@pytest.fixture(scope="module")
def net() -> Iterator[LabNet]:
    """A lab network, forwarding on in the relay, no steer program and no daemon."""
    net = make_lab(f"w{os.getpid() % 100000}")
    try:
        for ip in (CLIENT4, net.trx_ip4(1)):  # neighbours first: no ARP in the sniffs
            topology.run_in(net.relay, ["ping", "-c1", "-W1", ip])
        yield net
    finally:
        net.down()


@pytest.fixture(params=["detached", "pass_all"])
def xdp(request: pytest.FixtureRequest, net: LabNet) -> Iterator[str]:
    """The relay's interfaces with no XDP program, or with one that passes every packet."""
    if request.param == "pass_all":
        from bcc import BPF

        prog = BPF(text=PASS_ALL)
        fn = prog.load_func("pass_all", BPF.XDP)
        with netns(net.relay):
            for ifname in ("pub", "int"):
                prog.attach_xdp(ifname, fn, XDP_MODES["native"])
    try:
        yield request.param
    finally:
        for ifname in ("pub", "int"):
            detach(ifname, net.relay)


@pytest.fixture
def wall(net: LabNet) -> Iterator[firewall.Wall]:
    w = firewall.Wall(f"wall{os.getpid() % 100000}", net.relay, "pub", "int")
    firewall.remove(w.instance, w.netns)
    yield w
    firewall.remove(w.instance, w.netns)


def tcp_socket(ns: str) -> socket.socket:
    with netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(3.0)
    return s


def listener(ns: str, ip: str, port: int) -> socket.socket:
    s = tcp_socket(ns)
    s.bind((ip, port))
    s.listen()
    return s


def connect_later(ns: str, dst: tuple[str, int]) -> socket.socket:
    """A SYN on its way (a non-blocking connect has sent it when it returns)."""
    s = tcp_socket(ns)
    s.setblocking(False)
    s.connect_ex(dst)
    return s


def marker_from_relay(net: LabNet, dst: tuple[str, int], marker: bytes) -> None:
    """The relay's own datagram (its output is not the wall's business): it leaves after
    everything the attack made the relay forward, so it ends a sniff."""
    src = RELAY_INT4 if dst[0] != CLIENT4 else RELAY_PUB4
    with udp_socket(net.relay, Endpoint.parse(f"{src}:{dst[1]}")) as s:
        s.sendto(marker, dst)


def syn_to(port: int) -> Callable[[bytes], bool]:
    def match(f: bytes) -> bool:
        pkt = Ether(f)
        return TCP in pkt and pkt[TCP].dport == port and bool(pkt[TCP].flags.S)

    return match


def attack_inward(net: LabNet, port: int) -> list[bytes]:
    """Fragments and a TCP SYN from the client to trx1's internal address, then a marker
    from the relay: what trx1 received from the client."""
    trx_ip = net.trx_ip4(1)
    sniff = sniffer(net.trx(1), "eth0")
    client = udp_socket(net.client, Endpoint.parse(f"{CLIENT4}:{port}"))
    socks = [sniff, client]
    try:
        client.sendto(b"F" * 3000, (trx_ip, port))  # > MTU: sent as three fragments
        socks.append(connect_later(net.client, (trx_ip, port + 1)))
        marker_from_relay(net, (trx_ip, port + 2), b"marker-in")
        frames = frames_until(sniff, b"marker-in")
        return [f for f in frames if src_of(f) == CLIENT4]
    finally:
        for s in socks:
            s.close()


def attack_outward(net: LabNet, port: int) -> list[bytes]:
    """From trx1 to the client: a TCP SYN, UDP from a socket no session owns, an ICMP
    echo; then a marker from the relay. Returns every frame the client received but that."""
    trx_ip = net.trx_ip4(1)
    client_listener = listener(net.client, CLIENT4, port)
    sniff = sniffer(net.client, "eth0")
    socks = [client_listener, sniff]
    try:
        socks.append(connect_later(net.trx(1), (CLIENT4, port)))
        rogue = udp_socket(net.trx(1), Endpoint.parse(f"{trx_ip}:{port}"))
        socks.append(rogue)
        rogue.sendto(b"rogue-udp", (CLIENT4, port))
        topology.run_in(net.trx(1), ["ping", "-c1", "-W0.2", CLIENT4], check=False)
        marker_from_relay(net, (CLIENT4, port + 1), b"marker-out")
        frames = frames_until(sniff, b"marker-out")
        return [f for f in frames if b"marker-out" not in f]
    finally:
        for s in socks:
            s.close()


def test_wall_alone_keeps_the_public_side_out(net: LabNet, xdp: str, wall: firewall.Wall) -> None:
    crossed = attack_inward(net, 55010)
    assert len(crossed) >= 4, "without the wall the attack must cross (3 fragments, a SYN)"
    wall.install()
    before = firewall.counters(wall.instance, net.relay)["from_public"][0]
    assert attack_inward(net, 55020) == [], "something crossed the wall"
    dropped = firewall.counters(wall.instance, net.relay)["from_public"][0] - before
    assert dropped >= 2, dropped  # the datagram (its fragments) and the SYN


def test_wall_alone_keeps_internal_addresses_in(net: LabNet, xdp: str, wall: firewall.Wall) -> None:
    seen = attack_outward(net, 55030)
    assert {a for f in seen for a in internal_addrs(f)} == {net.trx_ip4(1)}, "nothing leaked?"
    wall.install()
    before = firewall.counters(wall.instance, net.relay)["to_public"][0]
    seen = attack_outward(net, 55040)
    leaks = {a for f in seen for a in internal_addrs(f)}
    assert not leaks, f"internal addresses reached the client: {leaks}"
    dropped = firewall.counters(wall.instance, net.relay)["to_public"][0] - before
    assert dropped >= 3, dropped  # SYN, UDP, echo request


def test_public_side_reaches_only_public_addresses(net: LabNet, wall: firewall.Wall) -> None:
    wall.install()
    before = firewall.counters(wall.instance, net.relay)["public_to_relay"][0]
    ping = ["ping", "-c1", "-W1"]
    assert topology.run_in(net.client, [*ping, RELAY_PUB4], check=False).returncode == 0
    assert topology.run_in(net.client, [*ping, RELAY_INT4], check=False).returncode == 1
    assert firewall.counters(wall.instance, net.relay)["public_to_relay"][0] - before == 1


def test_install_and_remove_are_idempotent(net: LabNet, wall: firewall.Wall) -> None:
    assert wall.install() is False and wall.install() is True
    assert firewall.exists(wall.instance, net.relay)
    assert firewall.remove(wall.instance, net.relay) is True
    assert firewall.remove(wall.instance, net.relay) is False
    assert firewall.counters(wall.instance, net.relay) == {}


def connects(ns: str, dst: tuple[str, int]) -> bool:
    s = tcp_socket(ns)
    s.settimeout(1.0)
    try:
        s.connect(dst)
        return True
    except OSError:  # timed out: a dropped SYN
        return False
    finally:
        s.close()


def test_ice_tcp_reaches_the_vip_port_and_nothing_more(net: LabNet, wall: firewall.Wall) -> None:
    """TCP to a VIP on an ICE-TCP port gets in (counted ice_tcp); the VIP's other ports and
    the relay's internal address on that port stay out, as without the exception."""
    vip = str(VIP4.ip)
    for port in (443, 444):  # TCP to both local, as `steerctl icetcp --port` makes it
        topology.add_local_route(net.relay, vip, port)
    with netns(net.relay):  # the VIP is no address of the relay's: the relay's listener
        socks = [tcp_listener(vip, p) for p in (443, 444)]
    socks.append(listener(net.relay, RELAY_INT4, 443))
    try:
        firewall.Wall(wall.instance, net.relay, "pub", "int", vips=(VIP4,)).install()
        assert not connects(net.client, (vip, 443)), "no exception without tcp_ports"
        ice = firewall.Wall(wall.instance, net.relay, "pub", "int", vips=(VIP4,), tcp_ports=(443,))
        ice.install()
        count = lambda name: firewall.counters(wall.instance, net.relay)[name][0]  # noqa: E731
        before = count("ice_tcp"), count("public_to_relay")
        assert connects(net.client, (vip, 443))
        assert not connects(net.client, (vip, 444))
        assert not connects(net.client, (RELAY_INT4, 443))
        assert count("ice_tcp") - before[0] >= 2  # the SYN and the handshake's ACK
        assert count("public_to_relay") - before[1] >= 2
    finally:
        for s in socks:
            s.close()
        topology.del_local_routes(net.relay)


# -- with the daemon


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    instance = f"fw{os.getpid() % 100000}"
    lab: LabNet | None = None
    d: Daemon | None = None
    cleanup(None, instance, [])
    try:
        lab = make_lab(f"fw{os.getpid() % 100000}")
        d = Daemon(
            lab,
            instance,
            tmp_path / "daemon.log",
            metrics_port=free_port(),
        )
        yield d
    finally:
        cleanup(lab, instance, [d] if d else [])


def unload(instance: str) -> str:
    res = CliRunner().invoke(cli, ["--instance", instance, "unload"])
    return f"{res.exit_code} {res.output}"


def rules(instance: str, ns: str) -> list[dict]:
    out = firewall.nft(ns, [{"list": {"table": {"family": "inet", "name": f"steer_{instance}"}}}])
    # handles are renumbered on every install; the rules themselves must not change
    return [
        {k: v for k, v in i["rule"].items() if k != "handle"}
        for i in out["nftables"]
        if "rule" in i
    ]


def scraped(d: Daemon, counter: str) -> float:
    url = f"http://127.0.0.1:{d.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "steer_firewall_packets_total" and sample.labels == {
                "counter": counter
            }:
                return float(sample.value)
    raise AssertionError(f"no steer_firewall_packets_total{{counter={counter!r}}}")


def test_the_daemon_owns_the_table(daemon: Daemon) -> None:
    ns, instance = daemon.net.relay, daemon.instance
    assert not firewall.exists(instance, ns)
    daemon.start()
    assert firewall.exists(instance, ns)
    installed = rules(instance, ns)
    assert len(installed) == 5  # VIP returns (v4, v6), 2 forward drops, input
    assert "created" in daemon.log()
    for key in ("net.ipv4.conf.all.send_redirects", "net.ipv4.conf.pub.send_redirects"):
        assert topology.run_in(ns, ["sysctl", "-n", key]).stdout.strip() == "0", key
    assert unload(instance).startswith("1 "), "unload must refuse while the daemon runs"
    assert firewall.exists(instance, ns)
    # traffic through the wall, then a restart: the table stays, counters and all
    assert topology.run_in(daemon.net.client, ["ping", "-c1", "-W1", RELAY_INT4], check=False)
    counted = firewall.counters(instance, ns)["public_to_relay"]
    assert counted[0] >= 1
    assert scraped(daemon, "public_to_relay") == counted[0]
    assert daemon.signal(signal.SIGTERM) == 0
    assert firewall.exists(instance, ns), "the wall must outlive the daemon, as XDP does"
    daemon.start()
    assert "adopted" in daemon.log()
    assert rules(instance, ns) == installed, "a restart must not add a second set of rules"
    assert firewall.counters(instance, ns)["public_to_relay"] == counted
    daemon.stop()
    out = unload(instance)
    assert out.startswith("0 ") and f"removed firewall table inet steer_{instance}" in out
    assert not firewall.exists(instance, ns)
