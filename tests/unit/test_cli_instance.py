"""Which instance a steerctl command uses when --instance is not given."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import pyctl.cli.root as root
import pyctl.dataplane.loader as loader
from pyctl.cli import cli

pytestmark = pytest.mark.unit


@pytest.fixture
def pins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(loader, "PIN_ROOT", tmp_path)
    monkeypatch.setattr(root, "PIN_ROOT", tmp_path)
    monkeypatch.delenv("STEER_INSTANCE", raising=False)
    return tmp_path


def pin(root_dir: Path, name: str) -> None:
    (root_dir / name).mkdir()
    for m in loader.PINNED_MAPS:
        (root_dir / name / m).touch()


def used_instance(args: list[str]) -> tuple[str, str]:
    """Run `steerctl ARGS` up to its command and return (instance, stderr)."""
    seen: list[str] = []

    @root.cli.command("probe-instance", hidden=True)
    @root.click.pass_obj
    def probe(cfg: root.CliConfig) -> None:
        seen.append(cfg.instance)

    try:
        r = CliRunner().invoke(cli, args)
    finally:
        root.cli.commands.pop("probe-instance")
    assert r.exit_code == 0, r.output
    return seen[0], r.stderr


def test_the_only_running_instance_is_used_and_named(
    pins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin(pins, "lab-steer")
    monkeypatch.setattr(root, "READERS", root.READERS | {"probe-instance"})
    instance, err = used_instance(["probe-instance"])
    assert instance == "lab-steer"
    assert "using instance 'lab-steer'" in err


def test_default_wins_when_it_runs(pins: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin(pins, "lab-steer")
    pin(pins, "default")
    monkeypatch.setattr(root, "READERS", root.READERS | {"probe-instance"})
    assert used_instance(["probe-instance"]) == ("default", "")


def test_several_instances_are_listed_not_guessed(
    pins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin(pins, "lab-a")
    pin(pins, "lab-b")
    monkeypatch.setattr(root, "READERS", root.READERS | {"probe-instance"})
    instance, err = used_instance(["probe-instance"])
    assert instance == "default"
    assert "running: lab-a, lab-b" in err


def test_commands_that_create_an_instance_never_guess(pins: Path) -> None:
    pin(pins, "lab-steer")
    assert used_instance(["probe-instance"]) == ("default", "")


def test_an_explicit_instance_is_kept(pins: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin(pins, "lab-steer")
    monkeypatch.setattr(root, "READERS", root.READERS | {"probe-instance"})
    assert used_instance(["--instance", "mine", "probe-instance"]) == ("mine", "")
