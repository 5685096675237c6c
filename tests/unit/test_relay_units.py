"""What an operator installs on a relay host (deploy/systemd): steer-relay@ (the daemon) and
steer-bird@ (its BIRD), and the VM lab's use of them (vagrant/relay.env, the client VM's
upstream-bird.conf). systemd and BIRD check the files; the daemon's own option parsing reads
the settings; the units keep BIRD apart from the daemon's restarts. The units running under
systemd are tests/vm's part."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import shlex
import subprocess
from pathlib import Path
from types import ModuleType

import click
import pytest

from pyctl.cli.daemon import _bgp_config, daemon
from pyctl.daemon.announce import Bfd, BgpConfig, announced_in
from pyctl.lab.bgp import RELAY_AS, ROUTER_AS

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
RELAY, BIRD = UNITS / "steer-relay@.service", UNITS / "steer-bird@.service"
EXAMPLE, VM_ENV = UNITS / "relay.env.example", ROOT / "vagrant" / "relay.env"
INSTALLED = "/opt/steer"  # where the units expect steer's checkout
DEPENDENCIES = ("Requires", "Requisite", "BindsTo", "PartOf", "Upholds", "Wants", "After")


def vmbgp() -> ModuleType:
    """vagrant/vmbgp.py (the VM demo's, standard library only): its env file reader."""
    spec = importlib.util.spec_from_file_location("vmbgp", ROOT / "vagrant" / "vmbgp.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def settings(path: Path) -> dict[str, str]:
    out: dict[str, str] = vmbgp().env_file(path)
    return out


def unit(path: Path) -> dict[str, list[str]]:
    """A unit file's `Section.Key` → its values, in order (a key may repeat)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(f"{section}.{key}", []).append(value)
    return out


def unit_env(u: dict[str, list[str]], instance: str) -> dict[str, str]:
    """The unit's Environment= settings for `instance` (%i)."""
    pairs = [p.split("=", 1) for v in u.get("Service.Environment", []) for p in shlex.split(v)]
    return {k: v.replace("%i", instance) for k, v in pairs}


def test_systemd_verifies_the_units(tmp_path: Path) -> None:
    # verified where they would be installed: this checkout in place of /opt/steer
    for path in (RELAY, BIRD):
        (tmp_path / path.name).write_text(path.read_text().replace(INSTALLED, str(ROOT)))
    ran = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / p.name) for p in (RELAY, BIRD))],
        capture_output=True,
        text=True,
    )
    # unknown keys and bad values are only warnings to systemd: none is allowed
    assert ran.returncode == 0 and not ran.stderr.strip(), ran.stderr
    assert (ROOT / "scripts" / "roles" / "relay.sh").stat().st_mode & 0o111


def test_the_relay_runs_its_role_script_after_bird_without_binding_to_it() -> None:
    relay, bird = unit(RELAY), unit(BIRD)
    # the daemon is the relay role (what the namespace lab and the VMs run), ready when
    # it says so (sd_notify READY=1 once it serves)
    assert relay["Service.ExecStart"] == [f"{INSTALLED}/scripts/roles/relay.sh"]
    assert relay["Service.Type"] == ["notify"]
    assert relay["Service.EnvironmentFile"] == ["/etc/steer/%i.env"]
    wants = " ".join(relay["Unit.Wants"]).split()
    after = " ".join(relay["Unit.After"]).split()
    assert "steer-bird@%i.service" in wants and "steer-bird@%i.service" in after
    # a daemon restart must not restart or stop BIRD (that would withdraw the VIPs), and a
    # BIRD restart must not stop the daemon: no hard tie either way, nothing in BIRD's
    # unit about the daemon at all
    for key in DEPENDENCIES[:5]:
        assert not any("steer-bird" in v for v in relay.get(f"Unit.{key}", [])), key
    for key in DEPENDENCIES:
        assert not any("steer-relay" in v for v in bird.get(f"Unit.{key}", [])), key
    assert not any("steer" in v for v in relay.get("Unit.PropagatesReloadTo", []))


def test_bird_runs_on_the_paths_the_daemon_drives() -> None:
    bird = unit(BIRD)
    env = unit_env(bird, "edge1")
    (start,) = bird["Service.ExecStart"]
    argv = start.split()
    assert argv[:2] == ["/usr/sbin/bird", "-f"]
    assert argv[argv.index("-c") + 1] == "${STEER_BGP_CONFIG}"
    assert argv[argv.index("-s") + 1] == "${STEER_BGP_SOCKET}"
    assert bird["Service.EnvironmentFile"] == ["-/etc/steer/%i.env"]  # the daemon's file
    # the daemon's own default --bgp-config for the instance is BIRD's default config
    default = _bgp_config("edge1", (), "/x.ctl", None, ("192.0.2.1",), (1, 2), None, Bfd(), 1)
    assert default is not None and str(default.config) == env["STEER_BGP_CONFIG"]
    # the socket lives in the unit's own runtime directory
    assert (
        Path(env["STEER_BGP_SOCKET"]).parent == Path("/run") / bird["Service.RuntimeDirectory"][0]
    )
    # the example and the VM lab (instance "default") point the daemon at that socket
    for path in (EXAMPLE, VM_ENV):
        assert settings(path)["STEER_BGP_SOCKET"] == unit_env(bird, "default")["STEER_BGP_SOCKET"]


def start_pre(tmp_path: Path, config: Path) -> None:
    """BIRD's ExecStartPre, as systemd runs it ($$ is a literal $)."""
    (cmd,) = unit(BIRD)["Service.ExecStartPre"]
    argv = shlex.split(cmd.replace("$$", "$"))
    subprocess.run(argv, check=True, env={"STEER_BGP_CONFIG": str(config), "PATH": "/usr/bin:/bin"})


def test_bird_starts_from_a_config_that_announces_nothing_and_keeps_the_daemons(
    tmp_path: Path,
) -> None:
    conf = tmp_path / "steer-default.conf"
    start_pre(tmp_path, conf)
    placeholder = conf.read_text()
    assert not announced_in(placeholder) and "route " not in placeholder
    ran = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    # a BIRD restart must find what the daemon last wrote (an announcement), untouched
    cfg = relay_bgp(VM_ENV, tmp_path)
    conf.write_text(cfg.render(True))
    start_pre(tmp_path, conf)
    assert conf.read_text() == cfg.render(True) and announced_in(conf.read_text())


def relay_bgp(path: Path, tmp_path: Path) -> BgpConfig:
    """The BGP config `steerctl daemon` makes from an env file, through its own options."""
    options = {p.envvar: p for p in daemon.params if isinstance(p, click.Option)}
    stand_in = tmp_path / "stand-in"  # for files the host's credentials would be
    stand_in.write_text("x\n")
    with pytest.MonkeyPatch.context() as mp:
        for k in list(os.environ):
            if k.startswith("STEER_"):
                mp.delenv(k)
        for k, v in settings(path).items():
            kind = options[k].type if k in options else None
            exists = isinstance(kind, click.Path) and kind.exists
            mp.setenv(k, str(stand_in) if exists else v)
        ctx = daemon.make_context("daemon", [])
    p = ctx.params
    cfg = _bgp_config(
        "default",
        p["vips"],
        p["bgp_socket"],
        str(tmp_path / "bird.conf"),
        p["bgp_peers"],
        (p["bgp_as"], p["bgp_peer_as"]),
        p["bgp_router_id"],
        Bfd(p["bfd_interval_ms"], p["bfd_multiplier"]),
        p["withdraw_after"],
    )
    assert cfg is not None, f"{path.name}: no BGP"
    return cfg


@pytest.mark.parametrize("path", [EXAMPLE, VM_ENV], ids=lambda p: p.name)
def test_the_settings_are_the_daemons_and_make_a_config_bird_takes(
    path: Path, tmp_path: Path
) -> None:
    known = {p.envvar for p in daemon.params if isinstance(p, click.Option)} | {"STEER_INSTANCE"}
    assert set(settings(path)) <= known, set(settings(path)) - known  # a typo is ignored silently
    cfg = relay_bgp(path, tmp_path)
    conf = tmp_path / "relay.conf"
    conf.write_text(cfg.render(True))
    ran = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert "route 203.0.113.10/32 blackhole;" in conf.read_text()


def test_the_vm_labs_upstream_router_peers_with_the_relay_vm(tmp_path: Path) -> None:
    conf = ROOT / "vagrant" / "upstream-bird.conf"
    ran = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    text = conf.read_text()
    relay = relay_bgp(VM_ENV, tmp_path)
    (peer,) = relay.peers
    # each side's neighbour is the other, with the lab's ASes and the same BFD timers
    assert f"local {peer.addr} as {peer.asn};" in text and peer.asn == ROUTER_AS
    assert f"neighbor {relay.router_id} as {relay.local_as};" in text
    assert relay.local_as == RELAY_AS
    assert f"min tx interval {relay.bfd.interval_ms} ms;" in text
    assert f"multiplier {relay.bfd.multiplier};" in text
    assert "bfd on;" in text
    # only the VIPs' host routes are taken from the relay, nothing is sent to it, and what
    # is learned goes into the client's kernel table (proto bird)
    (vip,) = relay.vips
    accepted = re.findall(r"if net ~ \[ (\S+)\{32,32\} \] then accept;", text)
    assert [ipaddress.ip_network(n) for n in accepted] == [
        ipaddress.ip_network(f"{vip}/24", strict=False)
    ]
    assert "export none;" in text and "export all;" in text
