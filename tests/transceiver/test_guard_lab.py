"""WHIP hardening on the lab's real transceiver process: the lab's WHIP token is required
and shown by `steerctl lab status --json`, and an offer with 200 remote candidates, most
of them internal, makes the transceiver probe none of the internal ones (its interfaces
sniffed with tcpdump) and at most a few others."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from click.testing import CliRunner
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.utils import rdpcap

from pyctl.cli import cli
from pyctl.dataplane.netns import netns
from pyctl.lab.lifecycle import Lab
from steer_common.apiclient import ApiError, SyncApiClient
from steer_testkit.labs import running
from transceiver.guard import MAX_CANDIDATES
from transceiver.registry import ControlApiRegistry, Registration

pytestmark = pytest.mark.e2e
PREFIX = f"g{os.getpid() % 10000}"
INTERNAL = ["10.88.0.1", "10.88.0.11", "10.88.0.99", "127.0.0.1", "169.254.7.7", "fd00:88::1"]
INTERNAL += ["::1", "10.88.0.12"]
PUBLIC = [f"198.51.100.{10 + i}" for i in range(50)]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    port = 20000 + os.getpid() % 10000  # metrics; the lab's TLS API is on port + 100
    with running(Lab(prefix=PREFIX, transceivers=1, metrics=f"127.0.0.1:{port}", ttl=30)) as lab_:
        yield lab_


def offer_with(candidates: list[str]) -> str:
    """A real aiortc offer whose candidates are replaced by `candidates`."""

    async def make() -> str:
        pc = RTCPeerConnection()
        pc.createDataChannel("x")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    lines = [ln for ln in asyncio.run(make()).splitlines() if not ln.startswith("a=candidate:")]
    at = next(i for i, ln in enumerate(lines) if ln.startswith("a=ice-ufrag:"))
    lines[at:at] = candidates
    return "".join(ln + "\r\n" for ln in lines if ln != "a=end-of-candidates")


def post(lab: Lab, sdp: str, token: str | None) -> tuple[int, str]:
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(lab.whip_url(1), sdp.encode(), headers, method="POST")
    with netns(lab.net.client):
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


def test_whip_token_in_lab_status_and_required(lab: Lab) -> None:
    r = CliRunner().invoke(cli, ["lab", "status", "--prefix", PREFIX, "-n", "1", "--json"])
    assert r.exit_code == 0, r.output
    status = json.loads(r.output)
    assert status["whip_token"] == lab.whip_token and len(status["whip_token"]) >= 32
    status_code, text = post(lab, offer_with([]), None)
    assert status_code == 401 and "bearer token" in text
    assert post(lab, offer_with([]), "wrong")[0] == 401
    assert lab.api().sessions(backend=1) == []


def test_internal_candidates_are_never_probed(lab: Lab, tmp_path: Path) -> None:
    cands = [
        f"a=candidate:{i} 1 udp 2122260223 {INTERNAL[i % len(INTERNAL)]} {40000 + i} typ host"
        for i in range(150)
    ]
    cands += [
        f"a=candidate:{150 + i} 1 udp 2122260223 {ip} {41000 + i} typ host"
        for i, ip in enumerate(PUBLIC)
    ]
    assert len(cands) == 200
    pcap = tmp_path / "trx1.pcap"
    sniff = subprocess.Popen(
        [
            *("ip", "netns", "exec", lab.net.trx(1), "tcpdump", "-i", "any", "-y", "LINUX_SLL"),
            *("-nn", "-U"),
            *("-w", str(pcap), "udp and not port 8080"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert sniff.stderr is not None
        for _ in range(5):  # capturing before the offer
            if b"listening" in sniff.stderr.readline():
                break
        else:
            raise AssertionError("tcpdump did not start")
        status, answer = post(lab, offer_with(cands), lab.whip_token)
        assert status == 201, answer
        allowed = {ipaddress.ip_address(ip) for ip in PUBLIC[:MAX_CANDIDATES]}

        def probed() -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
            out = set()
            for p in rdpcap(str(pcap)) if pcap.stat().st_size > 24 else []:
                ip = p.getlayer(IP) or p.getlayer(IPv6)
                if ip is not None and p.haslayer(UDP) and p[UDP].sport != 8080:
                    out.add(ipaddress.ip_address(ip.dst))
            return out

        deadline = time.monotonic() + 15
        while not allowed & probed():  # the transceiver's checks have begun
            assert time.monotonic() < deadline, "no connectivity check was seen at all"
            time.sleep(0.2)
        # aioice paces a check every 20 ms: 3 s is room for ~150 of them
        observe = time.monotonic() + 3
        while time.monotonic() < observe:
            time.sleep(0.2)
        seen = probed()
    finally:
        sniff.terminate()
        sniff.wait(10)
    internal = {ipaddress.ip_address(ip) for ip in INTERNAL}
    assert not seen & internal, f"probed internal addresses: {seen & internal}"
    assert seen <= allowed | {ipaddress.ip_address(str(v.ip)) for v in lab.net.vips}, seen
    assert len(seen & allowed) >= 1


def test_the_lab_api_speaks_tls_with_its_own_pair(lab: Lab) -> None:
    status = lab.status()
    assert status["api_url"].startswith("https://127.0.0.1:")
    token = lab.secrets.operator
    api = SyncApiClient(url=status["api_url"], token=token, ca=status["api_ca"])
    assert api.health()["ok"] and [b["id"] for b in api.backends()] == [1]
    with pytest.raises(ApiError) as e:
        SyncApiClient(url=status["api_url"], token="wrong" * 4, ca=status["api_ca"]).backends()
    assert e.value.status == 401
    plain = status["api_url"].replace("https://", "http://")
    with pytest.raises(aiohttp.ClientError):  # no plain HTTP on the TLS port
        SyncApiClient(url=plain, token=token).backends()
    with pytest.raises(aiohttp.ClientError):  # nor TLS a client cannot verify
        SyncApiClient(url=status["api_url"], token=token).backends()

    # a transceiver's registry over TLS, with its backend token
    async def register() -> None:
        reg = ControlApiRegistry(
            url=status["api_url"],
            token=lab.secrets.backend_file(1).read_text().strip(),
            ca=status["api_ca"],
        )
        try:
            sock = f"{lab.net.trx_ip4(1)}:45999"
            await reg.register(Registration("tls0001x", sock, 1, ttl=30))
            await reg.heartbeat("tls0001x", 30)
            await reg.deregister("tls0001x")
        finally:
            await reg.close()

    asyncio.run(register())
    assert api.sessions(ufrag="tls0001x") == []


def test_a_public_listener_without_tls_is_refused() -> None:
    r = CliRunner().invoke(
        cli,
        [
            *("daemon", "--public", "p", "--internal", "i", "--vip", "203.0.113.10:3478"),
            *("--api-listen", "0.0.0.0:8470"),
        ],
        env={"STEER_API_TOKEN": "x" * 20},
    )
    assert r.exit_code == 2 and "needs TLS" in r.output
