"""The VM lab's Vagrantfile: the roles it provisions (the unit tier checks them against the
role scripts, the end-to-end tier against the namespace lab)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def vagrant_roles() -> set[str]:
    text = (ROOT / "vagrant" / "Vagrantfile").read_text()
    assert "/steer/scripts/setup.sh" in text
    roles = set(re.findall(r'role_unit\("\w+", "(\w+)"', text))
    # the relay VM installs the units an operator installs (deploy/systemd), which start
    # their role scripts from the checkout at /opt/steer
    for unit in re.findall(r"/steer/(deploy/systemd/[\w@.-]+\.service)", text):
        started = re.findall(
            r"^ExecStart=/opt/steer/scripts/roles/(\w+)\.sh$", (ROOT / unit).read_text(), re.M
        )
        roles.update(started)
    return roles
