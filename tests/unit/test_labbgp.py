"""The fleet lab's BIRD configs (pyctl/lab/bgp.py): the router accepts from the relays only
host routes inside the VIPs' prefixes, exports nothing to them, installs ECMP and honours
GRACEFUL_SHUTDOWN; each transceiver's default routes go via every relay, each hop guarded
by BFD, and every relay answers every transceiver's BFD; BIRD 2 parses them (`bird -p`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pyctl.daemon.announce import Bfd
from pyctl.lab import bgp
from pyctl.lab.fleetnet import FleetNet


def parses(tmp_path: Path, text: str) -> None:
    assert shutil.which("bird"), "bird2 is not installed (scripts/setup.sh installs it)"
    (tmp_path / "t.conf").write_text(text)
    ran = subprocess.run(["bird", "-p", "-c", str(tmp_path / "t.conf")], capture_output=True)
    assert ran.returncode == 0, ran.stderr


def test_the_router_accepts_only_vip_host_routes_and_exports_nothing(tmp_path: Path) -> None:
    net = FleetNet("u", transceivers=1, relays=2)
    text = bgp.router_config(net, Bfd(300, 3))
    parses(tmp_path, text)
    assert "if net ~ [ 203.0.113.0/24{32,32} ] then {" in text
    assert "if net ~ [ 2001:db8:ffff::/64{128,128} ] then {" in text
    assert text.count("    accept;\n  }\n  reject;\n}") == 2  # nothing else accepted
    assert text.count("export none;") == 4  # 2 relays x 2 families
    assert text.count("import filter from_relays") == 4
    assert "merge paths yes;" in text  # ECMP into the kernel table
    assert "min tx interval 300 ms;" in text
    # RFC 8326: a route tagged GRACEFUL_SHUTDOWN is kept, at local-pref 0 (out of ECMP)
    assert text.count("if (65535, 0) ~ bgp_community then bgp_local_pref = 0;") == 2


def test_a_transceiver_routes_via_every_relay_while_its_bfd_is_up(tmp_path: Path) -> None:
    net = FleetNet("u", transceivers=2, relays=3)
    text = bgp.trx_config(net, 2, Bfd(100, 3))
    parses(tmp_path, text)
    assert "route 0.0.0.0/0 via 10.88.0.1 bfd via 10.88.0.2 bfd via 10.88.0.3 bfd;" in text
    assert "route ::/0 via fd00:88::1 bfd via fd00:88::2 bfd via fd00:88::3 bfd;" in text
    assert "router id 10.88.0.12;" in text and 'interface "eth0"' in text
    assert "protocol bgp" not in text  # nothing learned, nothing announced: BFD alone
    relay = bgp.relay_config(net, 1, tmp_path, Bfd(100, 3))
    assert [str(a) for a in relay.bfd_neighbors] == [
        "10.88.0.11",
        "fd00:88::b",
        "10.88.0.12",
        "fd00:88::c",
    ]
