"""The fleet lab router's BIRD config (pyctl/lab/bgp.py): it accepts from the relays only
host routes inside the VIPs' prefixes, exports nothing to them, installs ECMP, and BIRD 2
parses it (`bird -p`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pyctl.daemon.announce import Bfd
from pyctl.lab import bgp
from pyctl.lab.fleetnet import FleetNet


def test_the_router_accepts_only_vip_host_routes_and_exports_nothing(tmp_path: Path) -> None:
    net = FleetNet("u", transceivers=1, relays=2)
    text = bgp.router_config(net, Bfd(300, 3))
    assert shutil.which("bird"), "bird2 is not installed (scripts/setup.sh installs it)"
    (tmp_path / "router.conf").write_text(text)
    ran = subprocess.run(["bird", "-p", "-c", str(tmp_path / "router.conf")], capture_output=True)
    assert ran.returncode == 0, ran.stderr
    assert "if net ~ [ 203.0.113.0/24{32,32} ] then accept;" in text
    assert "if net ~ [ 2001:db8:ffff::/64{128,128} ] then accept;" in text
    assert text.count("export none;") == 4  # 2 relays x 2 families
    assert text.count("import filter from_relays") == 4
    assert "merge paths yes;" in text  # ECMP into the kernel table
    assert "min tx interval 300 ms;" in text
