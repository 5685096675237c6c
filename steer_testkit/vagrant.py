"""The VM lab's Vagrantfile: the roles it provisions (the unit tier checks them against the
role scripts, the end-to-end tier against the namespace lab)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def vagrant_roles() -> set[str]:
    text = (ROOT / "vagrant" / "Vagrantfile").read_text()
    assert "/steer/scripts/setup.sh" in text
    return set(re.findall(r'role_unit\("\w+", "(\w+)"', text))
