"""The VM lab: its Vagrantfile validates and provisions with the role scripts. That the
namespace lab runs the same scripts is checked on the live lab (tests/e2e/test_lab_roles.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from steer_testkit.vagrant import vagrant_roles

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_vagrantfile_validates() -> None:
    # --ignore-provider: a fresh Debian box has the vagrant package but no provider, and
    # validating the Vagrantfile must not depend on one
    r = subprocess.run(
        ["vagrant", "validate", "--ignore-provider"],
        cwd=ROOT / "vagrant",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Vagrantfile validated successfully" in r.stdout


def test_vms_provision_with_the_role_scripts() -> None:
    roles = vagrant_roles()
    assert roles == {"relay", "ingress", "transceiver"}
    for role in roles:
        assert (ROOT / "scripts" / "roles" / f"{role}.sh").stat().st_mode & 0o111
