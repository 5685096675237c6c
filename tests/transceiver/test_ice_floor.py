"""The aioice floor (issue 27, item 9): the rebind repair (transceiver/rebind.py) trusts a
probe's answer only because aioice discards a response whose MESSAGE-INTEGRITY does not
verify under the client's password; aioice does that from 0.13.0 on (0.12.1 and older
take any response with the transaction's id). pyproject.toml asks for it, and the
transceiver refuses to start under an older one."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from steer_testkit.transceiver import BASE
from transceiver import icefloor

ROOT = Path(__file__).resolve().parents[2]


def _requirements(extra: str) -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["optional-dependencies"][extra]]
    return {r.name: r for r in reqs}


def test_pyproject_asks_for_the_floor() -> None:
    req = _requirements("transceiver").get("aioice")
    assert req is not None, "the transceiver extra must name aioice"
    assert not req.specifier.contains("0.12.1")
    assert req.specifier.contains(icefloor.AIOICE_FLOOR)


def test_the_lock_and_the_installed_aioice_meet_it() -> None:
    floor = Version(icefloor.AIOICE_FLOOR)
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    (pinned,) = [line.split("==")[1] for line in lock if line.startswith("aioice==")]
    assert Version(pinned) >= floor
    assert Version(metadata.version("aioice")) >= floor
    icefloor.check_aioice()  # the real one passes


@pytest.mark.parametrize("old", ["0.12.1", "0.10.2", "0.9.0"])
def test_an_older_aioice_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, old: str
) -> None:
    monkeypatch.setattr(icefloor.metadata, "version", lambda name: old)
    with pytest.raises(RuntimeError) as err:
        icefloor.check_aioice()
    message = str(err.value)
    assert f"aioice {old} is installed" in message
    assert f"aioice>={icefloor.AIOICE_FLOOR}" in message
    assert "MESSAGE-INTEGRITY" in message


def test_the_real_entry_point_refuses_to_start(tmp_path: Path) -> None:
    """An aioice 0.12.1 distribution ahead on the path: the process exits 1 before it
    listens, saying why (the ready line never comes)."""
    dist = tmp_path / "aioice-0.12.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: aioice\nVersion: 0.12.1\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), STEER_TRX_API_SOCKET="/nonexistent.sock")
    exe = Path(sys.executable).with_name("steer-transceiver")
    proc = subprocess.run(
        [str(exe), *BASE, "--listen", "127.0.0.1:0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "ready" not in proc.stdout
    assert "cannot start: aioice 0.12.1 is installed" in proc.stderr
    assert f"aioice>={icefloor.AIOICE_FLOOR}" in proc.stderr
