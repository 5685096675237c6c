"""The VM lab boots and carries a call (vagrant/, docs/lab.md): one client, relay and
transceiver VM under libvirt, a WebRTC session from the client VM through the relay VM's VIP,
XDP native on the relay's virtio-net NICs, the relay set up with the units an operator
installs (deploy/systemd) and the client routing the VIP by what the relay's BIRD announces
over BGP. Part of `make test`, run after the rest of the suite in a pytest of its own
(Makefile: the guests' memory), so the libvirt networks it makes and tears down meet no
other test; `make test-vm` runs it alone. About 10-12 min under QEMU's TCG here, box build
included."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(2400)
def test_a_call_crosses_the_relay_vm_through_native_xdp() -> None:
    proc = subprocess.run(
        ["python3", "vagrant/vmdemo.py", "--json", "--sessions", "1", "--transceivers", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=2300,
    )
    assert proc.stdout.strip(), proc.stderr[-4000:]
    report = json.loads(proc.stdout)
    assert report["ok"], json.dumps(report["sessions"], indent=2)
    (session,) = report["sessions"]
    assert session["remote"] == report["vip"]
    assert session["rtp_received"] > 0 and session["messages_echoed"] == session["messages_sent"]
    # XDP ran natively on both of the relay VM's virtio-net NICs, and steered the call
    modes = {ifname: x["mode"] for ifname, x in report["vm"]["xdp"].items()}
    assert modes == {"eth1": "native", "eth2": "native"}, report["vm"]["xdp"]
    assert all(x["driver"] == "virtio_net" for x in report["vm"]["xdp"].values())
    forwarded = sum(v["packets"] for k, v in report["relay"].items() if k.lower().startswith("fwd"))
    assert forwarded > 0, report["relay"]
    # the client VM (the upstream router) routes the VIP by BGP: BIRD's route via the
    # relay's public address is its only one (there is no static route to fall back on)
    bgp = report["vm"]["bgp"]
    vip = report["vip"].rsplit(":", 1)[0]
    assert bgp["client"]["routes"] == [bgp["client"]["route"]], bgp["client"]
    route = bgp["client"]["route"]
    assert (route["dst"], route["gateway"], route["dev"]) == (vip, "198.51.100.254", "eth1")
    assert route["protocol"] == "bird"
    assert bgp["relay"]["announced"] == "1.0", bgp["relay"]  # the daemon's own view
    assert set(bgp["relay"]["sessions"].values()) == {"Established"}, bgp["relay"]
    # BIRD stopped under the running daemon: the daemon noticed, and announced again once
    # BIRD was back (a new BIRD), and the client has the route again
    outage = bgp["units"]["bird_outage"]
    assert (outage["announced_during"], outage["announced_after"]) == ("0", "1"), outage
    assert outage["pid_after"] not in (0, outage["pid_before"]), outage
    assert outage["client"] and outage["client"]["protocol"] == "bird", outage
    # the daemon stopped: the same BIRD kept exporting the VIP, past BFD's detection time,
    # and the client kept its route
    stop = bgp["units"]["daemon_stopped"]
    assert (stop["daemon"], stop["bird"], stop["exported"]) == ("inactive", "active", 1), stop
    assert stop["pid_after"] == stop["pid_before"] != 0, stop
    assert stop["client"] and stop["client"]["protocol"] == "bird", stop
    assert bgp["units"]["ok"]
