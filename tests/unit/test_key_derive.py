"""`steerctl key derive`: a backend's key from the fleet's, the one its transceivers get.
Derived keys differ per backend and do not verify another backend's ufrags."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

import pyctl.cli.keys  # noqa: F401  (registers the command)
from pyctl.cli.root import cli
from steer_common import seal

pytestmark = pytest.mark.unit


def test_derive_writes_the_backends_key_only(tmp_path: Path) -> None:
    fleet = seal.new_key(4)
    seal.write_key_file(tmp_path / "fleet.json", fleet)
    out = tmp_path / "b7.json"
    r = CliRunner().invoke(cli, ["key", "derive", str(tmp_path / "fleet.json"), "7", str(out)])
    assert r.exit_code == 0, r.output
    got = seal.read_key_file(out)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert got == seal.backend_key(fleet, 7) and got.id == 4 and got.key != fleet.key
    assert got.key != seal.backend_key(fleet, 8).key
    # what backend 7 mints verifies against the fleet key; nothing it mints for 8 does
    mine = seal.seal(got.key, got.id, 7, 40000)
    theirs = seal.seal(got.key, got.id, 8, 40000)
    assert seal.verify({4: fleet.key}, mine) is not None
    assert seal.verify({4: fleet.key}, theirs) is None
    again = CliRunner().invoke(cli, ["key", "derive", str(tmp_path / "fleet.json"), "7", str(out)])
    assert again.exit_code == 1 and "never overwritten" in again.output


@pytest.mark.parametrize("backend", ["0", "4096", "x"])
def test_derive_refuses_a_backend_that_cannot_be(tmp_path: Path, backend: str) -> None:
    seal.write_key_file(tmp_path / "fleet.json", seal.new_key(1))
    out = tmp_path / "out.json"
    r = CliRunner().invoke(cli, ["key", "derive", str(tmp_path / "fleet.json"), backend, str(out)])
    assert r.exit_code == 2 and not out.exists()
