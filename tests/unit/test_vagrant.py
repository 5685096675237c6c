"""The VM lab: its Vagrantfile validates, and it provisions with the scripts the namespace
lab runs (so those are exercised for real by the e2e tests and `make demo`)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_vagrantfile_validates() -> None:
    r = subprocess.run(
        ["vagrant", "validate"], cwd=ROOT / "vagrant", capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Vagrantfile validated successfully" in r.stdout


def test_vms_provision_with_the_lab_scripts() -> None:
    text = (ROOT / "vagrant" / "Vagrantfile").read_text()
    assert "/steer/scripts/setup.sh" in text
    roles = set(re.findall(r'role_unit\("\w+", "(\w+)"', text))
    assert roles == {"relay", "transceiver"}
    lab = (ROOT / "pyctl" / "lab.py").read_text()
    for role in roles:
        assert (ROOT / "scripts" / "roles" / f"{role}.sh").stat().st_mode & 0o111
        assert f'"{role}"' in lab, f"the namespace lab does not start the {role} role"
