"""The relay's BGP announcement (pyctl/daemon/announce.py): what is exported (only the VIPs'
host routes, nothing imported), that BIRD 2 parses it (`bird -p`), and when the announcer
announces and withdraws — a restarted daemon keeps the announcement its predecessor left."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pyctl.daemon import announce
from pyctl.daemon.announce import Announcer, Bfd, BgpConfig, Peer

VIP4, VIP6 = ipaddress.ip_address("203.0.113.10"), ipaddress.ip_address("2001:db8:ffff::10")
ROUTER4, ROUTER6 = ipaddress.ip_address("100.64.1.1"), ipaddress.ip_address("2001:db8:e:1::1")


def config(tmp: Path, withdraw_after: float = 10.0) -> BgpConfig:
    return BgpConfig(
        socket=tmp / "bird.ctl",
        config=tmp / "bird.conf",
        local_as=65001,
        peers=(Peer(ROUTER4, 65000), Peer(ROUTER6, 65000)),
        vips=(VIP4, VIP6),
        router_id="100.64.1.2",
        bfd=Bfd(100, 3),
        withdraw_after=withdraw_after,
    )


def parses(tmp: Path, text: str) -> None:
    assert shutil.which("bird"), "bird2 is not installed (scripts/setup.sh installs it)"
    path = tmp / "parse.conf"
    path.write_text(text)
    ran = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr + text


def test_an_announcing_relay_exports_only_its_vips(tmp_path: Path) -> None:
    text = config(tmp_path).render(announce=True)
    parses(tmp_path, text)
    assert "route 203.0.113.10/32 blackhole;" in text
    assert "route 2001:db8:ffff::10/128 blackhole;" in text
    assert 'if proto = "steer_vips4" && net ~ [ 203.0.113.10/32 ] then accept;' in text
    assert 'if proto = "steer_vips6" && net ~ [ 2001:db8:ffff::10/128 ] then accept;' in text
    # one session per family, each importing nothing and exporting through the filter
    assert "ipv4 { import none; export filter steer_export4; };" in text
    assert "ipv6 { import none; export filter steer_export6; };" in text
    assert text.count("bfd on;") == 2
    assert "min rx interval 100 ms;" in text and "multiplier 3;" in text
    # no kernel or direct protocol: nothing of the relay's own table can reach BIRD's
    assert "protocol kernel" not in text and "protocol direct" not in text
    assert "export all" not in text and "import all" not in text
    assert announce.announced_in(text)


def test_a_withdrawn_relay_has_no_route_and_keeps_its_sessions(tmp_path: Path) -> None:
    on, off = config(tmp_path).render(True), config(tmp_path).render(False)
    parses(tmp_path, off)
    assert "route " not in off and not announce.announced_in(off)
    # the sessions are the same: a withdrawal is a route change, not a session reset
    assert [line for line in on.splitlines() if "bgp" in line or "neighbor" in line] == [
        line for line in off.splitlines() if "bgp" in line or "neighbor" in line
    ]


def test_parse_sessions() -> None:
    out = """BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     16:45:52.858
uplink_100_64_1_1 BGP        ---        up     16:46:06.997  Established
uplink_2001_db8_e_1__1 BGP   ---        start  16:46:20.649  Idle          Error: BFD session down
"""
    assert announce.parse_sessions(out) == {
        "uplink_100_64_1_1": "Established",
        "uplink_2001_db8_e_1__1": "Idle",
    }


class Bird:
    """birdc, faked: what was configured, and sessions that are up."""

    def __init__(self) -> None:
        self.configured: list[bool] = []

    async def __call__(self, socket: Path, *args: str) -> tuple[int, str]:
        if args == ("configure",):
            self.configured.append(announce.announced_in((socket.parent / "bird.conf").read_text()))
            return 0, "Reconfiguration in progress\nReconfigured"
        return 0, "uplink_100_64_1_1 BGP --- up 16:46:06.997 Established\n"


def run_ticks(a: Announcer, n: int = 1) -> None:
    async def go() -> None:
        for _ in range(n):
            await a.tick()

    asyncio.run(go())


@pytest.fixture
def bird(monkeypatch: pytest.MonkeyPatch) -> Bird:
    fake = Bird()
    monkeypatch.setattr(announce, "birdc", fake)
    return fake


def announcer(cfg: BgpConfig, state: dict[str, Any]) -> Announcer:
    async def ready() -> bool:
        return bool(state["ready"])

    a = Announcer(cfg, ready, lambda: bool(state["draining"]))
    a.want = announce.announced_in(announce.read_config(cfg.config))  # as run() starts
    return a


def test_announce_when_ready_withdraw_on_drain(tmp_path: Path, bird: Bird) -> None:
    state = {"ready": False, "draining": False}
    a = announcer(config(tmp_path), state)
    run_ticks(a)
    assert not a.announced and bird.configured == [False]  # not ready: nothing offered
    state["ready"] = True
    run_ticks(a)
    assert a.announced and bird.configured[-1] is True
    assert a.status()["sessions"] == {"uplink_100_64_1_1": "Established"}
    run_ticks(a, 3)
    assert bird.configured == [False, True]  # no change, no configure
    state["draining"] = True
    run_ticks(a)
    assert not a.announced and bird.configured[-1] is False


def test_withdraw_only_after_being_unready_long_enough(
    tmp_path: Path, bird: Bird, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(announce.time, "monotonic", lambda: now[0])
    state = {"ready": True, "draining": False}
    a = announcer(config(tmp_path, withdraw_after=5.0), state)
    run_ticks(a)
    assert a.announced
    state["ready"] = False
    now[0] += 4.9
    run_ticks(a)  # unready since here
    now[0] += 4.9
    run_ticks(a)
    assert a.announced  # 4.9 s unready: still announcing
    now[0] += 0.2
    run_ticks(a)
    assert not a.announced and bird.configured[-1] is False


def test_a_restarted_daemon_keeps_the_announcement(tmp_path: Path, bird: Bird) -> None:
    """The predecessor announced; the new daemon is not ready yet at its first tick: it
    configures BIRD with the same announcing config, never a withdrawn one."""
    cfg = config(tmp_path)
    announce.write_config(cfg.config, cfg.render(True))
    a = announcer(cfg, {"ready": False, "draining": False})
    run_ticks(a, 3)
    assert bird.configured == [True]
    assert announce.announced_in(cfg.config.read_text())
