"""The VM lab boots and carries a call (vagrant/, docs/lab.md): one client, relay and
transceiver VM under libvirt, a WebRTC session from the client VM through the relay VM's VIP,
XDP native on the relay's virtio-net NICs. Part of `make test`, run after the rest of the
suite in a pytest of its own (Makefile: the guests' memory), so the libvirt networks it makes
and tears down meet no other test; `make test-vm` runs it alone. About 10-12 min under QEMU's
TCG here, box build included."""

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
