"""The VM lab's BGP, from the host (vagrant/vmdemo.py; the guest side is
vagrant/guest-bgp.sh): the client VM, the upstream router, routes the VIP by what the relay
VM's BIRD announces (`proto bird`, via the relay), and the relay's units
(deploy/systemd) keep that announcement the way a relay host needs: the daemon announces
again after its BIRD was stopped and started, and BIRD keeps announcing while the daemon is
stopped (the data plane still forwards).

Standard library only (the host runs it with Debian's python3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).resolve().parent
GUEST = "sudo /steer/vagrant/guest-bgp.sh"


def env_file(path: Path) -> dict[str, str]:
    """A systemd EnvironmentFile of KEY=VALUE lines (a value may be in double quotes)."""
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value.strip('"')
    return out


def relay_env() -> dict[str, str]:
    """vagrant/relay.env: the relay VM's settings (its /etc/steer/default.env)."""
    return env_file(HERE / "relay.env")


class Runs(Protocol):
    def ssh_json(self, name: str, vm: str, cmd: str, env: dict[str, str]) -> dict[str, Any]: ...

    def say(self, text: str) -> None: ...


def bird_route(found: dict[str, Any]) -> dict[str, Any] | None:
    """The client's route to the VIP if BIRD installed it via the relay's public address."""
    relay = relay_env()["STEER_BGP_ROUTER_ID"]
    for r in found.get("routes", []):
        if r.get("protocol") == "bird" and r.get("gateway") == relay:
            return dict(r)
    return None


def client_route(host: Runs, env: dict[str, str], name: str) -> dict[str, Any]:
    """Waits for the client VM's route to the VIP (BIRD's) and reports it."""
    found = host.ssh_json(name, "client", f"{GUEST} route", env)
    return {"route": bird_route(found), "routes": found["routes"], "waited_ms": found["waited_ms"]}


def describe(route: dict[str, Any] | None) -> str:
    if route is None:
        return "none from BIRD"
    return f"{route['dst']} via {route['gateway']} dev {route['dev']} proto {route['protocol']}"


def unit_checks(host: Runs, env: dict[str, str], keep: bool) -> dict[str, Any]:
    """BIRD stopped and started under a running daemon, then the daemon stopped under a
    running BIRD: what the relay and the client saw of each (see the module doc)."""
    outage = host.ssh_json("bgp_bird_outage", "relay", f"{GUEST} bird-outage", env)
    outage["client"] = client_route(host, env, "bgp_route_after_outage")["route"]
    host.say(
        f"      BIRD stopped: the daemon saw it (announced {outage['announced_during'] or '-'});"
        f" started again (pid {outage['pid_before']} -> {outage['pid_after']}): announced"
        f" {outage['announced_after'] or '-'} after {outage['back_ms'] / 1000:.1f} s;"
        f" the client's route: {describe(outage['client'])}"
    )
    stop = host.ssh_json("bgp_daemon_stop", "relay", f"{GUEST} daemon-stop", env)
    stop["client"] = client_route(host, env, "bgp_route_daemon_stopped")["route"]
    host.say(
        f"      daemon stopped ({stop['daemon']}): BIRD {stop['bird']}, pid {stop['pid_before']}"
        f" -> {stop['pid_after']}, VIP routes exported {stop['exported']};"
        f" the client's route: {describe(stop['client'])}"
    )
    if keep:  # leave the lab as it was (the daemon compiles first: minutes under TCG)
        host.ssh_json("bgp_daemon_start", "relay", f"{GUEST} daemon-start", env)
    ok = (
        outage["announced_during"] == "0"
        and outage["announced_after"] == "1"
        and outage["pid_after"] not in (0, outage["pid_before"])
        and outage["client"] is not None
        and stop["pid_after"] == stop["pid_before"] != 0
        and stop["bird"] == "active"
        and stop["daemon"] != "active"
        and stop["exported"] == 1
        and stop["client"] is not None
    )
    return {"ok": ok, "bird_outage": outage, "daemon_stopped": stop}
