"""`make vm-demo`: the demo of `make demo`, on VMs: one client, the relay, N transceivers.

On the host (Debian's python3, standard library only, so a fresh machine needs no .venv):

    python3 vagrant/vmdemo.py [--sessions 2] [--transceivers 1] [--seconds 4] [--json] [--keep]

makes the host a VM host (vagrant/host-setup.sh), builds the box if it is missing or stale
(vagrant/build-box.sh), prints QEMU's accelerator (vagrant/accel.sh), boots the lab
(`vagrant up --provider=libvirt`), shows the client VM's route to the VIP (BIRD's, learned
over BGP from the relay VM: vagrant/vmbgp.py), runs the demo's aiortc sessions from the
client VM (scripts/roles/client.sh) through the relay VM's VIP to the transceiver VMs,
prints the same table and relay counters as `make demo` (or, with --json, its report plus a
`vm` part: the relay's XDP mode per NIC, the BGP checks, the accelerator, the phases'
timings), then stops and starts the relay's BIRD and stops its daemon, checking that the
announcement holds, destroys the VMs and says how long it took. Exits non-zero if any
session or BGP check failed.

Inside the VMs the same file runs with the box's /steer/.venv: `guest-client` (the sessions
and their verdicts, with pyctl.lab.demo's table) and `guest-relay` (XDP mode, counters, BGP).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import vmbgp

HERE = Path(__file__).resolve().parent
VIP = vmbgp.relay_env()["STEER_VIP"]  # vagrant/relay.env, as the Vagrantfile reads it
INGRESS = "198.51.100.254"  # the relay's public address: WHIP goes through its ingress
# vagrant's upload progress and its listing of each domain's settings (still in the log)
NOISE = re.compile(r"Progress: \d+%|==> [\w-]+:\s+(--|->)|^\s*$")
XDP_MODES = {0: "none", 1: "native", 2: "generic", 3: "offload", 4: "multi"}


def whip_url(i: int) -> str:
    return f"http://{INGRESS}:{8080 + i}/whip"


# --- inside the client VM ------------------------------------------------------------------


def guest_client(args: argparse.Namespace) -> int:
    from pyctl.lab.demo import summarize
    from steer_common.ufrag import backend_of

    urls = [whip_url(1 + i % args.transceivers) for i in range(args.sessions)]
    cmd = ["/steer/scripts/roles/client.sh", "--seconds", str(args.seconds), *urls]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180 + args.seconds)
    results = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if len(results) != args.sessions:
        print(json.dumps({"error": f"the demo client failed:\n{proc.stderr[-3000:]}"}))
        return 1
    trx = {whip_url(i): i for i in range(1, args.transceivers + 1)}
    rows = []
    for r in results:  # the verdicts of pyctl.lab.demo.verdicts, for the VM lab's addresses
        asked = trx.get(r["whip"], 0)
        owner = backend_of(r["ufrag"]) if r["ufrag"] else 0
        error = r["error"]
        if r["ok"] and r["remote"] != VIP:
            error = f"nominated remote {r['remote'] or '-'} is not the VIP"
        elif r["ok"] and owner != asked:
            error = f"the ufrag names backend {owner}, the offer went to trx{asked}"
        rows.append(
            {
                "ufrag": r["ufrag"],
                "transceiver": f"trx{asked}",
                "result": "ok" if not error else "failed",
                **{k: v for k, v in r.items() if k != "ufrag"},
                "ok": not error,
                "error": error,
            }
        )
    print(json.dumps({"sessions": rows, "table": summarize(rows, "echo")}))
    return 0


# --- inside the relay VM -------------------------------------------------------------------


def sh(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout


def guest_relay(args: argparse.Namespace) -> int:
    from pyctl.lab.demo import counters_table

    xdp = {}
    for side, ifname in (("public", "eth1"), ("internal", "eth2")):
        link = json.loads(sh(f"ip -j -d link show dev {ifname}") or "[{}]")[0]
        info = link.get("xdp", {})
        queues = sh(f"ethtool -l {ifname}").split("Current hardware settings:")[-1]
        offloads = [
            ln.strip()
            for ln in sh(f"ethtool -k {ifname}").splitlines()
            if ln.strip().startswith(("generic-receive-offload", "large-receive-offload"))
        ]
        xdp[ifname] = {
            "side": side,
            "mode": XDP_MODES.get(info.get("mode", 0), str(info.get("mode"))),
            "prog_id": info.get("prog", {}).get("id"),
            "driver": sh(f"ethtool -i {ifname}").split("\n")[0].split(": ")[-1],
            "combined_queues": next(
                (ln.split()[-1] for ln in queues.splitlines() if ln.startswith("Combined")), "?"
            ),
            "offloads": offloads,
        }
    fallback = sh("journalctl -u steer-relay@default --no-pager | grep -i 'falling back' | tail -2")
    stats = json.loads(sh("/steer/.venv/bin/steerctl stats --json") or "{}")
    counters = {k: v for k, v in stats.get("reasons", {}).items() if v.get("packets")}
    out = {"xdp": xdp, "fallback_log": fallback.strip(), "counters": counters, "bgp": relay_bgp()}
    out["counters_table"] = counters_table(counters)
    print(json.dumps(out))
    return 0


def relay_bgp() -> dict[str, Any]:
    """The relay's BIRD sessions (as the daemon names them) and the daemon's own view."""
    from urllib.request import urlopen

    from pyctl.daemon.announce import parse_sessions

    env = vmbgp.relay_env()
    shown = sh(f"birdc -s {env['STEER_BGP_SOCKET']} show protocols")
    port = env["STEER_METRICS"].rsplit(":", 1)[1]
    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        metrics = r.read().decode()
    values = dict(ln.split(" ", 1) for ln in metrics.splitlines() if ln.startswith("steer_fleet_"))
    return {
        "sessions": parse_sessions(shown),
        "announced": values.get("steer_fleet_announced", "").strip(),
        "bird_pid": sh("systemctl show -p MainPID --value steer-bird@default").strip(),
    }


# --- on the host ---------------------------------------------------------------------------


class Host:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.t0 = time.monotonic()
        self.timings: dict[str, float] = {}
        self.log = (HERE / ".lab" / "vm-demo.log").open("a")

    def say(self, text: str) -> None:
        print(text, file=sys.stderr if self.as_json else sys.stdout, flush=True)

    def run(self, name: str, cmd: list[str], env: dict[str, str], quiet: bool = False) -> str:
        """Runs a step, its output to the log (and the screen, unless `quiet`); times it."""
        t = time.monotonic()
        self.log.write(f"\n$ {shlex.join(cmd)}\n")
        proc = subprocess.Popen(
            cmd, cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        out = []
        assert proc.stdout
        for line in proc.stdout:
            out.append(line)
            self.log.write(line)
            if not quiet and not NOISE.search(line):
                self.say("      " + line.rstrip())
        rc = proc.wait()
        self.timings[name] = round(time.monotonic() - t, 1)
        self.log.flush()
        if rc:
            raise RuntimeError(f"{shlex.join(cmd)} failed ({rc}); log: {self.log.name}")
        return "".join(out)

    def ssh_json(self, name: str, vm: str, cmd: str, env: dict[str, str]) -> dict[str, Any]:
        out = self.run(name, ["vagrant", "ssh", vm, "-c", cmd], env, quiet=True)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"{vm}: no answer from `{cmd}`:\n{out[-2000:]}")
        return json.loads(lines[-1])


def lab_gone(env: dict[str, str]) -> str:
    """Leftovers of the lab: its libvirt domains, networks and QEMU processes."""
    doms = subprocess.run(
        ["virsh", "-q", "list", "--all", "--name"], capture_output=True, text=True, env=env
    ).stdout.split()
    nets = subprocess.run(
        ["virsh", "-q", "net-list", "--all", "--name"], capture_output=True, text=True, env=env
    ).stdout.split()
    ours = [d for d in doms if d.startswith("vagrant_")] + [
        n for n in nets if n.startswith("steer-")
    ]
    for net in [n for n in nets if n.startswith("steer-")]:  # vagrant-libvirt may leave them
        subprocess.run(["virsh", "net-destroy", net], capture_output=True, env=env)
        subprocess.run(["virsh", "net-undefine", net], capture_output=True, env=env)
    return " ".join(ours)


def host_main(args: argparse.Namespace) -> int:
    host = Host(args.json)
    env = {
        **os.environ,
        "STEER_TRANSCEIVERS": str(args.transceivers),
        "VAGRANT_DEFAULT_PROVIDER": "libvirt",
        "LIBVIRT_DEFAULT_URI": "qemu:///system",
    }
    report: dict[str, Any] = {"ok": False}
    up = False
    try:
        host.say("[1/8] VM host: packages and libvirtd (vagrant/host-setup.sh)")
        host.run("host_setup", [str(HERE / "host-setup.sh")], env)
        host.say("[2/8] the box steer/bookworm-lab (vagrant/build-box.sh; kept between runs)")
        host.run("box", [str(HERE / "build-box.sh")], env)
        accel = subprocess.run(
            [str(HERE / "accel.sh")], capture_output=True, text=True, env=env, check=True
        )
        env["STEER_VM_ACCEL"] = accel.stdout.strip()
        host.say(f"[3/8] {accel.stderr.strip()}")
        host.say("      clearing leftovers of an earlier VM lab")
        host.run("clear", ["vagrant", "destroy", "-f"], env, quiet=True)
        lab_gone(env)
        vms = ["relay", *(f"trx{i}" for i in range(1, args.transceivers + 1)), "client"]
        host.say(f"[4/8] vagrant up: {', '.join(vms)} (1 vCPU each)")
        up = True
        host.run("boot", ["vagrant", "up", "--provider=libvirt", *vms], env)
        host.say("[5/8] the client VM's route to the VIP, over BGP from the relay VM's BIRD")
        route = vmbgp.client_route(host, env, "bgp_route")
        host.say(f"      {vmbgp.describe(route['route'])} (waited {route['waited_ms']} ms)")
        host.say(f"[6/8] {args.sessions} WebRTC sessions from the client VM through {VIP}")
        client = host.ssh_json(
            "call",
            "client",
            "sudo /steer/.venv/bin/python /steer/vagrant/vmdemo.py guest-client"
            f" --sessions {args.sessions} --transceivers {args.transceivers}"
            f" --seconds {args.seconds}",
            env,
        )
        if "error" in client:
            raise RuntimeError(client["error"])
        relay = host.ssh_json(
            "relay_read",
            "relay",
            "sudo /steer/.venv/bin/python /steer/vagrant/vmdemo.py guest-relay",
            env,
        )
        host.say("\n" + client["table"])
        host.say("\nrelay counters (XDP, per reason):\n" + relay["counters_table"])
        host.say("\nrelay VM XDP:")
        for ifname, x in relay["xdp"].items():
            host.say(
                f"  {ifname} ({x['side']}): {x['mode']} on {x['driver']}, prog {x['prog_id']},"
                f" {x['combined_queues']} queues; {'; '.join(x['offloads'])}"
            )
        if relay["fallback_log"]:
            host.say("  daemon: " + relay["fallback_log"])
        sessions = client["sessions"]
        bgp = {"client": route, "relay": relay["bgp"]}
        host.say(
            f"relay VM BGP: announced {bgp['relay']['announced'] or '-'} (steer_fleet_announced),"
            f" BIRD pid {bgp['relay']['bird_pid']}, sessions "
            + (", ".join(f"{k} {v}" for k, v in bgp["relay"]["sessions"].items()) or "none")
        )
        report = {
            "app": "echo",
            "rebind": False,
            "vip": VIP,
            "ok": False,
            "sessions": sessions,
            "relay": relay["counters"],
            "vm": {
                "accel": env["STEER_VM_ACCEL"],
                "transceivers": args.transceivers,
                "xdp": relay["xdp"],
                "bgp": bgp,
            },
        }
        host.say("\n[7/8] the relay's units: BIRD stopped and started, then the daemon stopped")
        bgp["units"] = vmbgp.unit_checks(host, env, args.keep)
        report["ok"] = (
            all(r["result"] == "ok" for r in sessions)
            and route["route"] is not None
            and bgp["relay"]["announced"] in ("1", "1.0")
            and bgp["units"]["ok"]
        )
    finally:
        if up and not args.keep:
            host.say("\n[8/8] vagrant destroy -f")
            host.run("teardown", ["vagrant", "destroy", "-f"], env, quiet=True)
            left = lab_gone(env)
            if left:
                host.say(f"      left behind: {left}")
        elif args.keep:
            host.say("\n[8/8] --keep: the VMs stay up (cd vagrant && vagrant destroy -f)")
        total = round(time.monotonic() - host.t0, 1)
        host.timings["total"] = total
        report.setdefault("vm", {})["timings_s"] = host.timings
        host.say(
            "\nVM demo took "
            + f"{int(total // 60)} min {total % 60:.0f} s ("
            + ", ".join(f"{k} {v:.0f} s" for k, v in host.timings.items() if k != "total")
            + ")"
        )
    if args.json:
        print(json.dumps(report, indent=2))
    if not report["ok"]:
        host.say("some sessions or BGP checks failed (see above)")
    return 0 if report["ok"] else 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "mode", nargs="?", default="host", choices=["host", "guest-client", "guest-relay"]
    )
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--transceivers", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    ap.add_argument("--keep", action="store_true", help="leave the VMs up")
    args = ap.parse_args()
    if args.mode == "guest-client":
        sys.exit(guest_client(args))
    if args.mode == "guest-relay":
        sys.exit(guest_relay(args))
    (HERE / ".lab").mkdir(exist_ok=True)
    try:
        sys.exit(host_main(args))
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"vm-demo: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
