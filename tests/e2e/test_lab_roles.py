"""The namespace lab runs its processes through the same role scripts the Vagrant VMs
provision with (vagrant/Vagrantfile), so the e2e tests exercise those scripts for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyctl.lab.lifecycle import WHIP_PORT, Lab
from pyctl.lab.net import RELAY_PUB4
from steer_testkit.vagrant import vagrant_roles

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# what each role script execs (scripts/roles/<role>.sh, last line)
EXECS = {
    "relay": lambda lab: [str(ROOT / ".venv/bin/steerctl"), "--instance", lab.instance, "daemon"],
    "transceiver": lambda lab: [str(ROOT / ".venv/bin/steer-transceiver")],
    "ingress": lambda lab: ["-m", "pyctl.lab.ingress", *lab_routes(lab)],
    "icetcp": lambda lab: [str(ROOT / ".venv/bin/steerctl"), "--instance", lab.instance, "icetcp"],
}
# roles the namespace lab runs and the VM lab does not provision yet (docs/ice-tcp.md)
NOT_IN_VMS = {"icetcp"}


def lab_routes(lab: Lab) -> list[str]:
    return [
        f"{RELAY_PUB4}:{WHIP_PORT + i}={lab.net.trx_ip4(i)}:{WHIP_PORT}"
        for i in range(1, lab.transceivers + 1)
    ]


def argv_of(pid: int) -> list[str]:
    """The program's argv without its interpreter (console scripts run under python)."""
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    return argv[1:] if "python" in Path(argv[0]).name else argv


def test_every_lab_process_runs_through_a_vagrant_role_script(lab: Lab) -> None:
    procs = lab.status()["processes"]
    roles = {"daemon": "relay", "ingress": "ingress", "icetcp": "icetcp"}
    roles |= {n: "transceiver" for n in procs if n.startswith("trx")}
    assert set(procs) == set(roles) and len(roles) == 3 + lab.transceivers
    for name, role in roles.items():
        assert procs[name], f"{name} is not running"
        script = (ROOT / "scripts" / "roles" / f"{role}.sh").read_text()
        assert script.rstrip().splitlines()[-1].startswith("exec ")
        assert argv_of(procs[name]) == EXECS[role](lab), name
    assert set(roles.values()) - NOT_IN_VMS == vagrant_roles()
