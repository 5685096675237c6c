"""`steerctl lab`: the namespace lab with its processes — the daemon, N transceivers.

The network comes from pyctl/lab/net.py. Processes run in the background with a log and a
pid file each under /run/steer/lab-<prefix>/; `down` finds them there, so it cleans up
after a crash too. The daemon runs in the root namespace (it attaches into the relay
namespace); each transceiver runs in its own namespace and reaches the daemon's control
API through the unix socket (a path, so visible from every namespace).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyctl.dataplane import topology
from pyctl.dataplane.loader import RUN_DIR, unload
from pyctl.dataplane.netns import netns
from pyctl.lab.nat import LabNat
from pyctl.lab.net import RELAY_INT4, RELAY_PUB4, LabNet
from pyctl.lab.secrets import LabSecrets
from steer_common.apiclient import ApiError, SyncApiClient
from steer_common.paths import api_socket

BIN = Path(sys.executable).parent
ROLES = Path(__file__).resolve().parents[2] / "scripts" / "roles"
WHIP_PORT = 8080


class LabError(RuntimeError):
    pass


@dataclass(frozen=True)
class Lab:
    prefix: str = "steer"
    transceivers: int = 2
    metrics: str = "127.0.0.1:9477"
    ttl: int = 30  # transceivers' registration TTL (heartbeats every ttl/3)
    store: str = "memory"  # the daemon's --store
    app: str = "echo"  # what every transceiver runs per session (steer-transceiver --app)
    nat: bool = False  # a NAT namespace between the client and the relay (pyctl/lab/nat.py)

    @property
    def net(self) -> LabNet:
        return LabNet(self.prefix, self.transceivers)

    @property
    def nat_box(self) -> LabNat:
        return LabNat(self.net)

    @property
    def instance(self) -> str:
        return f"lab-{self.prefix}"

    @property
    def run_dir(self) -> Path:
        return RUN_DIR / f"lab-{self.prefix}"

    @property
    def api_socket(self) -> Path:
        return api_socket(self.instance)

    def whip_url(self, i: int) -> str:
        """Transceiver i's WHIP endpoint as clients reach it: through the ingress on the
        relay's public address (pyctl/lab/ingress.py), port WHIP_PORT + i."""
        return f"http://{RELAY_PUB4}:{WHIP_PORT + i}/whip"

    @property
    def secrets(self) -> LabSecrets:
        """Tokens and the API's TLS pair (pyctl/lab/secrets.py)."""
        return LabSecrets(self.run_dir)

    @property
    def api_listen(self) -> str:
        """The daemon's TCP API (TLS): the metrics port + 100, so labs do not collide."""
        host, port = self.metrics.rsplit(":", 1)
        return f"{host}:{int(port) + 100}"

    @property
    def whip_token(self) -> str | None:
        return self.secrets.whip

    def api(self) -> SyncApiClient:
        return SyncApiClient(socket=self.api_socket, token=self.secrets.operator)

    # -- processes
    def _start(self, name: str, role: str, env: dict[str, str], ns: str | None = None) -> int:
        """Start scripts/roles/<role>.sh as `name`, configured by `env`, in the background
        unless it is running already (up is idempotent). The Vagrant VMs run the same
        role scripts."""
        running = self._alive(name)
        if running is not None:
            return running
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.run_dir / f"{name}.log", "ab")  # noqa: SIM115 (handed to the child)
        script = str(ROLES / f"{role}.sh")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, script] if ns else [script],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **env},
        )
        (self.run_dir / f"{name}.pid").write_text(str(proc.pid))
        return proc.pid

    def _alive(self, name: str) -> int | None:
        try:
            pid = int((self.run_dir / f"{name}.pid").read_text())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None

    def _wait(self, what: str, ready: Any, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if self._alive(name) is None:
                raise LabError(
                    f"{what} exited; see {self.run_dir / (name + '.log')}:\n" + self.tail(name)
                )
            time.sleep(0.2)
        raise LabError(f"{what} not ready after {timeout:.0f}s; see {self.run_dir}/{name}.log")

    def tail(self, name: str, lines: int = 15) -> str:
        try:
            return "\n".join((self.run_dir / f"{name}.log").read_text().splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    # -- verbs
    def up(self, progress: Any = print) -> dict[str, Any]:
        """Build the network, start the daemon and the transceivers; return status()."""
        net = self.net
        progress(f"network: {len(net.namespaces)} namespaces ({', '.join(net.namespaces)})")
        net.up()
        if self.nat:
            progress(f"nat: {self.nat_box.ns} masquerades the client (random ports)")
            self.nat_box.up()
        secrets = self.secrets.ensure(self.transceivers)
        progress(f"daemon: instance {self.instance}, VIPs {', '.join(map(str, net.vips))}")
        vips = " ".join(str(v) for v in net.vips)
        relay_env = {
            "STEER_INSTANCE": self.instance,
            "STEER_NETNS": net.relay,
            "STEER_PUBLIC": "pub",
            "STEER_INTERNAL": "int",
            "STEER_VIP": vips,
            "STEER_METRICS": self.metrics,
            "STEER_API_SOCKET": str(self.api_socket),
            "STEER_API_TOKEN_FILE": str(secrets.operator_file),
            "STEER_API_LISTEN": self.api_listen,
            "STEER_API_CERT": str(secrets.cert),
            "STEER_API_KEY": str(secrets.key),
            "STEER_STORE": self.store,
        }
        self._start("daemon", "relay", relay_env)
        self._wait("the daemon", self._api_ready, "daemon")
        api = self.api()
        for i in range(1, self.transceivers + 1):
            try:
                api.add_backend(i, addr=net.trx_ip4(i), name=f"trx{i}")
            except ApiError as e:
                if e.status != 409:  # already there: an adopted lab
                    raise
        routes = [
            f"{RELAY_PUB4}:{WHIP_PORT + i}={net.trx_ip4(i)}:{WHIP_PORT}"
            for i in range(1, self.transceivers + 1)
        ]
        progress(f"ingress: WHIP through {RELAY_PUB4}:{WHIP_PORT + 1}..")
        self._start("ingress", "ingress", {"STEER_INGRESS_ROUTES": " ".join(routes)}, net.relay)
        for i in range(1, self.transceivers + 1):
            progress(f"transceiver trx{i}: {self.whip_url(i)}")
            trx_env = {
                "STEER_TRX_LISTEN": f"{net.trx_ip4(i)}:{WHIP_PORT}",
                "STEER_TRX_BIND_IP": net.trx_ip4(i),
                "STEER_TRX_VIP": vips,
                "STEER_TRX_BACKEND_ID": str(i),
                "STEER_TRX_TTL": str(self.ttl),
                "STEER_TRX_API_SOCKET": str(self.api_socket),
                "STEER_TRX_API_TOKEN_FILE": str(secrets.backend_file(i)),
                "STEER_TRX_WHIP_TOKEN_FILE": str(secrets.whip_file),
                "STEER_TRX_CORS_ORIGIN": "*",  # open for development, Authorization allowed
                "STEER_TRX_RATE_LIMIT": "600",  # test suites offer from one client address
                "STEER_TRX_FORWARDED_ALLOW_IPS": RELAY_INT4,  # the ingress, as trx see it
                "STEER_TRANSCEIVER_APP": self.app,
            }
            self._start(f"trx{i}", "transceiver", trx_env, ns=net.trx(i))
        for i in range(1, self.transceivers + 1):
            self._wait(f"transceiver trx{i}", lambda i=i: self._healthy(i), f"trx{i}")
        progress("lab is up")
        return self.status()

    def _api_ready(self) -> bool:
        try:
            return bool(self.api().health().get("ok"))
        except Exception:
            return False

    def _healthy(self, i: int) -> bool:
        """Ask trx i's /healthz from the client namespace, the way clients reach WHIP."""
        url = self.whip_url(i).removesuffix("/whip") + "/healthz"
        try:
            with netns(self.net.client), urllib.request.urlopen(url, timeout=1) as r:
                return bool(r.status == 200)
        except Exception:
            return False

    def down(self, progress: Any = print) -> None:
        names = ["daemon", "ingress"] + [p.stem for p in self.run_dir.glob("trx*.pid")]
        for name in sorted(set(names), reverse=True):  # transceivers first: they deregister
            pid = self._alive(name)
            if pid is None:
                continue
            progress(f"stopping {name} (pid {pid})")
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                if self._alive(name) is None:
                    break
                time.sleep(0.1)
            else:
                os.killpg(pid, signal.SIGKILL)
        for line in unload(self.instance):
            progress(line)
        progress(f"removing namespaces of {self.prefix}")
        self.nat_box.down()
        self.net.down()
        for f in self.run_dir.glob("*.pid"):
            f.unlink()
        self.api_socket.unlink(missing_ok=True)
        self.secrets.remove()

    def status(self) -> dict[str, Any]:
        net = self.net
        out: dict[str, Any] = {
            "vip": str(net.vips[0]),
            "vips": [str(v) for v in net.vips],
            "whip": [self.whip_url(i) for i in range(1, self.transceivers + 1)],
            "instance": self.instance,
            "up": net.exists(),
            "processes": {
                n: self._alive(n)
                for n in ["daemon", "ingress"]
                + [f"trx{i}" for i in range(1, self.transceivers + 1)]
            },
            "logs": str(self.run_dir),
            "metrics": f"http://{self.metrics}/metrics",
            "whip_token": self.whip_token,
            "api_url": f"https://{self.api_listen}",
            "api_ca": str(self.secrets.cert),
        }
        out["namespaces"] = net.describe()["namespaces"]
        if self.nat_box.exists():
            out["nat"] = self.nat_box.describe()
        return out

    def exec(self, role: str, argv: list[str]) -> int:
        roles = {"client": self.net.client, "relay": self.net.relay, "fabric": self.net.fabric}
        roles |= {"nat": self.nat_box.ns} if self.nat_box.exists() else {}
        roles |= {f"trx{i}": self.net.trx(i) for i in range(1, self.transceivers + 1)}
        if role not in roles:
            raise LabError(f"no role {role!r}; roles: {', '.join(roles)}")
        if not topology.netns_exists(roles[role]):
            raise LabError(f"the lab is not up (no namespace {roles[role]})")
        return subprocess.call(["ip", "netns", "exec", roles[role], *argv])


def status_json(lab: Lab) -> str:
    return json.dumps(lab.status(), indent=2)
