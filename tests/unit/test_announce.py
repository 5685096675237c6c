"""The relay's BGP announcement (pyctl/daemon/announce.py): what is exported (only the VIPs'
host routes, nothing imported; tagged GRACEFUL_SHUTDOWN on a drain), the transceivers' BFD
answered in every state, that BIRD 2 parses it (`bird -p`), and when the announcer
announces and withdraws — a restarted daemon keeps the announcement its predecessor left."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest

from pyctl.cli.daemon import _bgp_config
from pyctl.daemon import announce
from pyctl.daemon.announce import Announcer, Bfd, BgpConfig, Peer

VIP4, VIP6 = ipaddress.ip_address("203.0.113.10"), ipaddress.ip_address("2001:db8:ffff::10")
ROUTER4, ROUTER6 = ipaddress.ip_address("100.64.1.1"), ipaddress.ip_address("2001:db8:e:1::1")


TRX4, TRX6 = ipaddress.ip_address("10.88.0.11"), ipaddress.ip_address("fd00:88::b")


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
        bfd_neighbors=(TRX4, TRX6),
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
    assert "65535" not in text and not announce.graceful_in(text)


def test_a_drained_relay_announces_with_graceful_shutdown(tmp_path: Path) -> None:
    """RFC 8326: the same routes and sessions, each VIP route tagged (65535, 0)."""
    plain, drained = config(tmp_path).render(True), config(tmp_path).render(True, graceful=True)
    parses(tmp_path, drained)
    for fam, prefix in ((4, "203.0.113.10/32"), (6, "2001:db8:ffff::10/128")):
        assert (
            f'if proto = "steer_vips{fam}" && net ~ [ {prefix} ] then '
            "{ bgp_community.add((65535, 0)); accept; }"
        ) in drained
        assert f"route {prefix} blackhole;" in drained
    assert announce.announced_in(drained) and announce.graceful_in(drained)
    others = [
        line for line in drained.splitlines() if "65535" not in line and "graceful" not in line
    ]
    assert others == [line for line in plain.splitlines() if "then accept;" not in line]
    # a withdrawn config carries no route to tag, and does not claim the tag
    assert not announce.graceful_in(config(tmp_path).render(False, graceful=True))


def test_the_transceivers_bfd_is_answered_in_every_state(tmp_path: Path) -> None:
    """The BFD neighbours (the transceivers guarding their return routes) are in every
    config: a drain or a withdrawal never takes the relay out of their routes."""
    for announcing, graceful in ((True, False), (True, True), (False, False)):
        text = config(tmp_path).render(announcing, graceful)
        parses(tmp_path, text)
        assert "  neighbor 10.88.0.11;\n  neighbor fd00:88::b;\n}" in text, text


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
    """birdc, faked: what was configured (announcing, tagged), and sessions that are up."""

    def __init__(self) -> None:
        self.configured: list[bool] = []
        self.tagged: list[bool] = []

    async def __call__(self, socket: Path, *args: str) -> tuple[int, str]:
        if args == ("configure",):
            text = (socket.parent / "bird.conf").read_text()
            self.configured.append(announce.announced_in(text))
            self.tagged.append(announce.graceful_in(text))
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
    text = announce.read_config(cfg.config)  # as run() starts
    a.want, a.graceful = announce.announced_in(text), announce.graceful_in(text)
    return a


def test_announce_when_ready_graceful_shutdown_on_drain(tmp_path: Path, bird: Bird) -> None:
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
    run_ticks(a)  # still offered, tagged: the router keeps it as a backup only
    assert a.announced and bird.configured[-1] is True and bird.tagged[-1] is True
    assert a.status()["graceful_shutdown"] is True
    state["draining"] = False
    run_ticks(a)
    assert a.announced and bird.tagged[-1] is False and not a.status()["graceful_shutdown"]


def test_a_drained_relay_unready_too_long_still_withdraws(
    tmp_path: Path, bird: Bird, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(announce.time, "monotonic", lambda: now[0])
    state = {"ready": True, "draining": True}
    a = announcer(config(tmp_path, withdraw_after=5.0), state)
    run_ticks(a)
    assert a.announced and bird.tagged == [True]
    state["ready"] = False
    run_ticks(a)
    now[0] += 5.1
    run_ticks(a)
    assert not a.announced and bird.configured[-1] is False
    assert not a.status()["graceful_shutdown"]


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


def test_a_restarted_daemon_of_a_drained_relay_keeps_the_tagged_routes(
    tmp_path: Path, bird: Bird
) -> None:
    cfg = config(tmp_path)
    announce.write_config(cfg.config, cfg.render(True, graceful=True))
    a = announcer(cfg, {"ready": False, "draining": True})
    run_ticks(a, 3)
    assert bird.configured == [True] and bird.tagged == [True]


def test_bfd_neighbors_from_the_command_line(tmp_path: Path) -> None:
    """--bfd-neighbor (STEER_BFD_NEIGHBOR, space-separated) reaches the config; it needs
    --bgp-socket (the BIRD that answers) and refuses what is not an address."""

    def parse(socket: str | None, neighbors: tuple[str, ...]) -> BgpConfig | None:
        peers = ("100.64.1.1",) if socket else ()
        args = ("i", (), socket, str(tmp_path / "b.conf"), peers, (65001, 65000), None)
        return _bgp_config(*args, Bfd(), 10.0, neighbors)

    got = parse(str(tmp_path / "b.ctl"), ("10.88.0.11 fd00:88::b", "10.88.0.11"))
    assert got is not None and got.bfd_neighbors == (TRX4, TRX6)
    assert "  neighbor 10.88.0.11;\n  neighbor fd00:88::b;\n" in got.render(False)
    with pytest.raises(click.BadParameter, match="--bfd-neighbor needs --bgp-socket"):
        parse(None, ("10.88.0.11",))
    with pytest.raises(click.BadParameter):
        parse(str(tmp_path / "b.ctl"), ("trx1",))
