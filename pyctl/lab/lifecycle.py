"""`steerctl lab`: the namespace lab with its processes — the daemon, N transceivers.

The network comes from pyctl/lab/net.py (one relay) or pyctl/lab/fleetnet.py (`--relays
N`, N > 1: a router spreading clients over N relays with ECMP, one daemon instance per
relay, all `--fleet` on one redis-server the lab starts, with the same operator token and
seal key; BIRD in the router's, every relay's and every transceiver's namespace: each
relay's daemon announces the VIPs through its own over BGP with BFD, and each transceiver's
keeps its default route via the relays that answer its BFD: pyctl/lab/bgp.py). Processes run in the
background with a log and a pid file each under /run/steer/lab-<prefix>/; `down` finds
them there, so it cleans up after a crash too. The daemon runs in the root namespace (it
attaches into the relay namespace); each transceiver runs in its own namespace and reaches
the daemon's control API through the unix socket (a path, so visible from every
namespace); in a fleet lab, every relay's, its own relay's first (its registry moves on
when one fails). With `--prometheus`, Debian's prometheus scrapes them all with the shipped
rules (pyctl/lab/prometheus.py). The one-relay lab also runs the relay's ICE-TCP component
(`steerctl icetcp`, pyctl/tcp) on the VIPs' port ICE_TCP_PORT, opened in the daemon's
firewall table and advertised by every transceiver; `steerctl lab block-udp client` then
makes the client fall back to it (pyctl/lab/blockudp.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyctl.daemon.announce import Bfd, write_config
from pyctl.dataplane import topology
from pyctl.dataplane.loader import RUN_DIR, unload
from pyctl.dataplane.netns import netns
from pyctl.lab import bgp, prometheus
from pyctl.lab.fleetnet import SIG4, FleetNet
from pyctl.lab.nat import LabNat
from pyctl.lab.net import RELAY_INT4, RELAY_PUB4, LabNet
from pyctl.lab.redisserver import server_argv
from pyctl.lab.secrets import LabSecrets
from steer_common import seal
from steer_common.apiclient import ApiError, SyncApiClient
from steer_common.paths import api_socket, instance_lock

BIN = Path(sys.executable).parent
ROLES = Path(__file__).resolve().parents[2] / "scripts" / "roles"
WHIP_PORT = 8080
ICE_TCP_PORT = 443


def _answers(url: str) -> bool:
    """Whether `url` answers 200 within a second (a process's readiness)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except Exception:
        return False


class LabError(RuntimeError):
    pass


@dataclass(frozen=True)
class LabRelay:
    """One relay of the lab: its namespace and its daemon instance."""

    name: str  # "relay" (one relay) or "relay1".."relayN"
    instance: str
    ns: str
    process: str  # its daemon's pid file name under the run directory
    api_socket: Path
    metrics: str
    api_listen: str

    @property
    def index(self) -> int:
        return int(self.name.removeprefix("relay") or 1)


@dataclass(frozen=True)
class Lab:
    prefix: str = "steer"
    transceivers: int = 2
    metrics: str = "127.0.0.1:9477"
    ttl: int = 30  # transceivers' registration TTL (heartbeats every ttl/3)
    store: str = "memory"  # the daemon's --store
    app: str = "echo"  # what every transceiver runs per session (steer-transceiver --app)
    nat: bool = False  # a NAT namespace between the client and the relay (pyctl/lab/nat.py)
    relays: int = 1  # > 1: the fleet lab (pyctl/lab/fleetnet.py)
    bfd_interval_ms: int = 100  # the fleet lab's BFD on every BGP session (pyctl/lab/bgp.py)
    bfd_multiplier: int = 3
    prometheus: bool = False  # start a Prometheus scraping the lab (pyctl/lab/prometheus.py)
    ice_tcp: bool = True  # the one-relay lab's ICE-TCP component (pyctl/tcp) on ICE_TCP_PORT

    @classmethod
    def load(cls, prefix: str = "steer", transceivers: int = 2, **kw: Any) -> Lab:
        """The lab `prefix` with the shape `up` recorded (relays, transceivers), so that
        status, down, kill and exec see every relay without being told how many."""
        try:
            shape = json.loads((RUN_DIR / f"lab-{prefix}" / "shape.json").read_text())
        except (FileNotFoundError, ValueError):
            shape = {}
        kw.setdefault("relays", int(shape.get("relays", 1)))
        for k in ("bfd_interval_ms", "bfd_multiplier"):
            if k in shape:
                kw.setdefault(k, int(shape[k]))
        if "metrics" in shape:
            kw.setdefault("metrics", shape["metrics"])
        return cls(prefix, int(shape.get("transceivers", transceivers)), **kw)

    @property
    def net(self) -> LabNet:
        if self.relays > 1:
            return FleetNet(self.prefix, self.transceivers, self.relays)
        return LabNet(self.prefix, self.transceivers)

    @property
    def fleet_net(self) -> FleetNet:
        if self.relays < 2:
            raise LabError(f"lab {self.prefix} has one relay (steerctl lab up --relays N)")
        return FleetNet(self.prefix, self.transceivers, self.relays)

    def relay_list(self) -> list[LabRelay]:
        """Relay 1 of a fleet lab keeps the metrics port; relay k adds 1000·(k-1)."""
        if self.relays == 1:
            one = (self.instance, self.net.relay, "daemon", self.api_socket)
            return [LabRelay("relay", *one, self.metrics, self.api_listen)]
        host, port = self.metrics.rsplit(":", 1)
        out = []
        for k in range(1, self.relays + 1):
            inst, mport = f"lab-{self.prefix}-relay{k}", int(port) + 1000 * (k - 1)
            where = (inst, self.fleet_net.relay_ns(k), f"relay{k}", api_socket(inst))
            out.append(LabRelay(f"relay{k}", *where, f"{host}:{mport}", f"{host}:{mport + 100}"))
        return out

    def relay_named(self, name: str) -> LabRelay:
        for r in self.relay_list():
            if name in (r.name, r.instance):
                return r
        names = ", ".join(r.name for r in self.relay_list())
        raise LabError(f"no relay {name!r} in lab {self.prefix}; relays: {names}")

    @property
    def bfd(self) -> Bfd:
        return Bfd(self.bfd_interval_ms, self.bfd_multiplier)

    def bgp_env(self, r: LabRelay) -> dict[str, str]:
        """Relay r's daemon's --bgp-… (its BIRD's socket and config, the router as peer)."""
        c = bgp.relay_config(self.fleet_net, r.index, self.run_dir, self.bfd)
        return {
            "STEER_BGP_SOCKET": str(c.socket),
            "STEER_BGP_CONFIG": str(c.config),
            "STEER_BGP_PEER": " ".join(str(p.addr) for p in c.peers),
            "STEER_BGP_AS": str(c.local_as),
            "STEER_BGP_PEER_AS": str(bgp.ROUTER_AS),
            "STEER_BGP_ROUTER_ID": c.router_id or "",
            "STEER_BFD_INTERVAL_MS": str(self.bfd_interval_ms),
            "STEER_BFD_MULTIPLIER": str(self.bfd_multiplier),
            "STEER_BFD_NEIGHBOR": " ".join(str(a) for a in c.bfd_neighbors),
        }

    @property
    def nat_box(self) -> LabNat:
        return LabNat(self.net)

    @property
    def instance(self) -> str:
        """The daemon instance (relay 1's in a fleet lab)."""
        return f"lab-{self.prefix}" if self.relays == 1 else f"lab-{self.prefix}-relay1"

    @property
    def run_dir(self) -> Path:
        return RUN_DIR / f"lab-{self.prefix}"

    @property
    def api_socket(self) -> Path:
        return api_socket(self.instance)

    @property
    def seal_key_file(self) -> Path:
        """The fleet lab's seal key: every relay holds it; each transceiver gets its derivation."""
        return self.run_dir / "seal-key.json"

    def backend_key_file(self, i: int) -> Path:
        """Transceiver i's seal key: the fleet key derived for its backend (`steerctl key
        derive`), all it can mint with."""
        return self.run_dir / f"seal-key-trx{i}.json"

    @property
    def redis_url(self) -> str:
        return f"unix://{self.run_dir / 'redis.sock'}"

    def whip_url(self, i: int) -> str:
        """Transceiver i's WHIP endpoint as clients reach it: through the ingress on the
        relay's public address (pyctl/lab/ingress.py), port WHIP_PORT + i."""
        return f"http://{RELAY_PUB4}:{WHIP_PORT + i}/whip"

    @property
    def secrets(self) -> LabSecrets:
        """Tokens and the API's TLS pair (pyctl/lab/secrets.py)."""
        return LabSecrets(self.run_dir)

    @property
    def with_ice_tcp(self) -> bool:
        """ICE-TCP runs in the one-relay lab (a fleet's relays do not share TCP state)."""
        return self.ice_tcp and self.relays == 1

    @property
    def icetcp_metrics(self) -> str:
        """The ICE-TCP component's /metrics: the daemon's metrics port + 300 (+ 100 is the
        API's, + 200 Prometheus')."""
        host, port = self.metrics.rsplit(":", 1)
        return f"{host}:{int(port) + 300}"

    @property
    def api_listen(self) -> str:
        """The daemon's TCP API (TLS): the metrics port + 100, so labs do not collide."""
        host, port = self.metrics.rsplit(":", 1)
        return f"{host}:{int(port) + 100}"

    @property
    def prometheus_listen(self) -> str:
        """The lab's Prometheus: the metrics port + 200 (the tests' labs take odd metrics
        ports from 9477 up, their APIs + 100)."""
        host, port = self.metrics.rsplit(":", 1)
        return f"{host}:{int(port) + 200}"

    @property
    def whip_token(self) -> str | None:
        return self.secrets.whip

    def api(self, relay: LabRelay | None = None) -> SyncApiClient:
        """The operator's API client of `relay` (default: the first)."""
        sock = relay.api_socket if relay else self.api_socket
        return SyncApiClient(socket=sock, token=self.secrets.operator)

    # -- processes
    def _start(self, name: str, role: str, env: dict[str, str], ns: str | None = None) -> int:
        """Start scripts/roles/<role>.sh as `name`, configured by `env`, in the background
        unless it is running already (up is idempotent). The Vagrant VMs run the same
        role scripts."""
        return self._spawn(name, [str(ROLES / f"{role}.sh")], env, ns)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], ns: str | None) -> int:
        running = self._alive(name)
        if running is not None:
            return running
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.run_dir / f"{name}.log", "ab")  # noqa: SIM115 (handed to the child)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv] if ns else argv,
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
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        # a process this one started and that has exited is a zombie until reaped: reap it
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return None
        return pid

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
        fleet = self.relays > 1
        if fleet:
            self._fleet_up(progress)
        vips = " ".join(str(v) for v in net.vips)
        relays = self.relay_list()
        for r in relays:
            progress(f"daemon: instance {r.instance} in {r.ns}, VIPs {vips}")
            relay_env = {
                "STEER_INSTANCE": r.instance,
                "STEER_NETNS": r.ns,
                "STEER_PUBLIC": "pub",
                "STEER_INTERNAL": "int",
                "STEER_VIP": vips,
                "STEER_ALLOW_SOURCES": " ".join(net.client_nets),
                "STEER_METRICS": r.metrics,
                "STEER_API_SOCKET": str(r.api_socket),
                "STEER_API_TOKEN_FILE": str(secrets.operator_file),
                "STEER_API_LISTEN": r.api_listen,
                "STEER_API_CERT": str(secrets.cert),
                "STEER_API_KEY": str(secrets.key),
                "STEER_STORE": self.redis_url if fleet else self.store,
                **({"STEER_FLEET": "1"} if fleet else {}),
                **(self.bgp_env(r) if fleet else {}),
                **({"STEER_ICE_TCP_PORT": str(ICE_TCP_PORT)} if self.with_ice_tcp else {}),
            }
            self._start(r.process, "relay", relay_env)
        for r in relays:
            self._wait(f"the daemon {r.instance}", lambda r=r: self._api_ready(r), r.process)
            self._configure(r)
        if self.with_ice_tcp:
            self._icetcp_up(progress)
        if fleet:
            progress(f"bgp: waiting for the router's ECMP route via all {self.relays} relays")
            every = list(range(1, self.relays + 1))
            self._wait(
                "the router's BGP route to the VIP via every relay",
                lambda: self.fleet_net.vip_hops() == every,
                "bird-router",
                timeout=30,
            )
            for i in range(1, self.transceivers + 1):
                self._wait(
                    f"trx{i}'s default routes via every relay (BFD up)",
                    lambda i=i: all(self.fleet_net.return_hops(i, f) == every for f in (4, 6)),
                    f"bird-trx{i}",
                    timeout=30,
                )
        routes = [
            f"{RELAY_PUB4}:{WHIP_PORT + i}={net.trx_ip4(i)}:{WHIP_PORT}"
            for i in range(1, self.transceivers + 1)
        ]
        progress(f"ingress: WHIP through {RELAY_PUB4}:{WHIP_PORT + 1}..")
        ingress_ns = self.fleet_net.router if fleet else net.relay
        self._start("ingress", "ingress", {"STEER_INGRESS_ROUTES": " ".join(routes)}, ingress_ns)
        for i in range(1, self.transceivers + 1):
            progress(f"transceiver trx{i}: {self.whip_url(i)}")
            trx_env = {
                "STEER_TRX_LISTEN": f"{net.trx_ip4(i)}:{WHIP_PORT}",
                "STEER_TRX_BIND_IP": net.trx_ip4(i),
                "STEER_TRX_VIP": vips,
                "STEER_TRX_BACKEND_ID": str(i),
                "STEER_TRX_TTL": str(self.ttl),
                "STEER_TRX_API_SOCKET": " ".join(self._trx_apis(i, relays)),
                "STEER_TRX_API_TOKEN_FILE": str(secrets.backend_file(i)),
                "STEER_TRX_WHIP_TOKEN_FILE": str(secrets.whip_file),
                "STEER_TRX_CORS_ORIGIN": "*",  # open for development, Authorization allowed
                "STEER_TRX_RATE_LIMIT": "600",  # test suites offer from one client address
                # the ingress, as trx see it: the relay's inside, or the fleet router's leg
                "STEER_TRX_FORWARDED_ALLOW_IPS": SIG4 if fleet else RELAY_INT4,
                "STEER_TRANSCEIVER_APP": self.app,
                **({"STEER_TRX_SEAL_KEY_FILE": str(self.backend_key_file(i))} if fleet else {}),
                **({"STEER_TRX_ICE_TCP_PORT": str(ICE_TCP_PORT)} if self.with_ice_tcp else {}),
            }
            self._start(f"trx{i}", "transceiver", trx_env, ns=net.trx(i))
        for i in range(1, self.transceivers + 1):
            self._wait(f"transceiver trx{i}", lambda i=i: self._healthy(i), f"trx{i}")
        if self.prometheus:
            self._prometheus_up(progress)
        progress("lab is up")
        return self.status()

    def _icetcp_up(self, progress: Any) -> None:
        """The relay's ICE-TCP component, beside its daemon (scripts/roles/icetcp.sh)."""
        progress(f"icetcp: TCP {ICE_TCP_PORT} on the VIPs, metrics {self.icetcp_metrics}")
        env = {
            "STEER_INSTANCE": self.instance,
            "STEER_NETNS": self.net.relay,
            "STEER_TCP_VIP": " ".join(str(v.ip) for v in self.net.vips),
            "STEER_TCP_PORT": str(ICE_TCP_PORT),
            "STEER_TCP_METRICS": self.icetcp_metrics,
        }
        self._start("icetcp", "icetcp", env)
        self._wait("the ICE-TCP component", self._icetcp_ready, "icetcp", timeout=30)

    def _icetcp_ready(self) -> bool:
        return _answers(f"http://{self.icetcp_metrics}/metrics")

    def _fleet_up(self, progress: Any) -> None:
        """The fleet lab's shared parts: its shape on disk, the seal key, redis-server."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "shape.json").write_text(
            json.dumps(
                {
                    "relays": self.relays,
                    "transceivers": self.transceivers,
                    "metrics": self.metrics,
                    "bfd_interval_ms": self.bfd_interval_ms,
                    "bfd_multiplier": self.bfd_multiplier,
                }
            )
        )
        if not self.seal_key_file.exists():
            seal.write_key_file(self.seal_key_file, seal.new_key(1))
        fleet_key = seal.read_key_file(self.seal_key_file)
        for i in range(1, self.transceivers + 1):  # each transceiver gets its own only
            self.backend_key_file(i).unlink(missing_ok=True)
            seal.write_key_file(self.backend_key_file(i), seal.backend_key(fleet_key, i))
        sock = self.run_dir / "redis.sock"
        progress(f"redis: {self.redis_url} (the relays' shared store)")
        if self._alive("redis") is None:
            sock.unlink(missing_ok=True)
        self._spawn("redis", server_argv(self.run_dir), {}, None)
        self._wait("redis-server", sock.exists, "redis", timeout=10)
        self._bird_up(progress)

    def _bird_up(self, progress: Any) -> None:
        """BIRD in the router namespace (peering with every relay, ECMP into its kernel
        table), in every relay's and in every transceiver's (its default routes, each hop
        guarded by BFD), each with its own config and control socket. A relay's first
        config announces nothing (it answers the transceivers' BFD already): its daemon
        takes it over (--bgp-config) and announces once ready. An existing relay config is
        kept (up again on a live lab)."""
        net = self.fleet_net
        progress(
            f"bgp: BIRD in {net.router} and every relay (BFD {self.bfd_interval_ms} ms x "
            f"{self.bfd_multiplier})"
        )
        conf = self.run_dir / "bird-router.conf"
        write_config(conf, bgp.router_config(net, self.bfd))
        self._spawn(
            "bird-router", bgp.bird_argv(conf, bgp.router_socket(self.run_dir)), {}, net.router
        )
        for k in range(1, self.relays + 1):
            c = bgp.relay_config(net, k, self.run_dir, self.bfd)
            if not c.config.exists():
                write_config(c.config, c.render(announce=False))
            self._spawn(f"bird-relay{k}", bgp.bird_argv(c.config, c.socket), {}, net.relay_ns(k))
        for i in range(1, self.transceivers + 1):
            conf = self.run_dir / f"bird-trx{i}.conf"
            write_config(conf, bgp.trx_config(net, i, self.bfd))
            argv = bgp.bird_argv(conf, bgp.trx_socket(self.run_dir, i))
            self._spawn(f"bird-trx{i}", argv, {}, net.trx(i))

    def _prometheus_up(self, progress: Any) -> None:
        """The scrape forwarder (transceivers' /metrics out of their namespaces), then
        prometheus scraping every relay and transceiver with the shipped rules."""
        routes = [
            f"trx{i}={self.net.trx(i)}/{self.net.trx_ip4(i)}:{WHIP_PORT}"
            for i in range(1, self.transceivers + 1)
        ]
        ports = self.run_dir / "scrape-ports.json"
        if self._alive("scrape") is None:
            ports.unlink(missing_ok=True)
        scrape = [sys.executable, "-m", "pyctl.lab.scrape", str(ports), *routes]
        self._spawn("scrape", scrape, {}, None)
        self._wait("the scrape forwarder", ports.exists, "scrape", timeout=10)
        trx = json.loads(ports.read_text())
        relays = {r.name: r.metrics for r in self.relay_list()}
        conf = self.run_dir / "prometheus.yml"
        conf.write_text(prometheus.config(relays, trx))
        data = self.run_dir / "prometheus"
        self._spawn("prometheus", prometheus.argv(conf, data, self.prometheus_listen), {}, None)
        self._wait("prometheus", self._prometheus_ready, "prometheus", timeout=30)
        progress(f"prometheus: http://{self.prometheus_listen} (rules {prometheus.RULES})")

    def _prometheus_ready(self) -> bool:
        return _answers(f"http://{self.prometheus_listen}/-/ready")

    def _configure(self, r: LabRelay) -> None:
        """What every relay holds: every transceiver as a backend, the fleet's seal key."""
        api = self.api(r)
        for i in range(1, self.transceivers + 1):
            try:
                api.add_backend(i, addr=self.net.trx_ip4(i), name=f"trx{i}")
            except ApiError as e:
                if e.status != 409:  # already there: an adopted lab
                    raise
        if self.relays > 1:
            api.request("POST", "/v1/keys", seal.read_key_file(self.seal_key_file).to_json())

    def _api_ready(self, relay: LabRelay | None = None) -> bool:
        try:
            return bool(self.api(relay).health().get("ok"))
        except Exception:
            return False

    def _trx_apis(self, i: int, relays: list[LabRelay]) -> list[str]:
        """Transceiver i's control APIs: every relay's socket, starting at its own relay
        ((i-1) mod N)+1. When that relay dies, the transceiver's calls move to the next
        (transceiver/registry.py): its heartbeats reach a live relay, which takes the dead
        relay's sessions over, and new sessions register there."""
        own = (i - 1) % len(relays)
        return [str(r.api_socket) for r in relays[own:] + relays[:own]]

    def kill_relay(self, name: str) -> dict[str, Any]:
        """The relay dies now, as a machine does: its daemon and its BIRD SIGKILLed, its
        forwarding gone and its links silent (pyctl/lab/fleetnet.py, FleetNet.kill). No
        route is touched: BFD takes the relay out of the router's route (its BGP sessions)
        and out of the transceivers' default routes (their static next hops)."""
        r = self.relay_named(name)
        if self.relays < 2:
            raise LabError("the only relay of the lab cannot fail over: lab up --relays N")
        pid = self._alive(r.process)
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
        self.fleet_net.kill(r.index)  # silent first: BIRD's dying TCP close must not escape
        bird_pid = self._alive(f"bird-{r.name}")
        if bird_pid is not None:
            os.killpg(bird_pid, signal.SIGKILL)
        return {
            "relay": r.name,
            "instance": r.instance,
            "pid": pid,
            "bird_pid": bird_pid,
            "alive": self._relays_up(),
        }

    def drain_relay(self, name: str, undo: bool = False) -> dict[str, Any]:
        """`steerctl fleet drain` on the relay: it refuses registrations and its daemon
        tags its VIPs GRACEFUL_SHUTDOWN (the router's ECMP route drops it, keeping it as a
        backup); the transceivers keep it in their routes (it still forwards). `undo`
        announces them plainly again."""
        r = self.relay_named(name)
        if self.relays < 2:
            raise LabError("drain is for a fleet lab: lab up --relays N")
        s = self.api(r).request("POST", "/v1/fleet/drain", {"drain": not undo})
        return {"relay": r.name, "instance": r.instance, "state": s["state"]}

    def _relays_up(self) -> list[str]:
        return [f"relay{k}" for k in self.fleet_net.alive()]

    def _healthy(self, i: int) -> bool:
        """Ask trx i's /healthz from the client namespace, the way clients reach WHIP."""
        url = self.whip_url(i).removesuffix("/whip") + "/healthz"
        try:
            with netns(self.net.client), urllib.request.urlopen(url, timeout=1) as r:
                return bool(r.status == 200)
        except Exception:
            return False

    def down(self, progress: Any = print) -> None:
        names = ["daemon", "ingress"] + [p.stem for p in self.run_dir.glob("*.pid")]
        # transceivers first (they deregister), redis last (the daemons write to it)
        for name in sorted(set(names), key=lambda n: (n == "redis", not n.startswith("trx"))):
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
        for r in self.relay_list():
            for line in unload(r.instance):
                progress(line)
            r.api_socket.unlink(missing_ok=True)
            instance_lock(r.instance).unlink(missing_ok=True)  # its daemon is gone
            # a drain outlives daemon restarts, not the lab: the next lab starts active
            (RUN_DIR / f"{r.instance}.draining").unlink(missing_ok=True)
        progress(f"removing namespaces of {self.prefix}")
        self.nat_box.down()
        self.net.down()
        for f in self.run_dir.glob("*.pid"):
            f.unlink()
        for left in ("shape.json", "redis.sock", "prometheus.yml", "scrape-ports.json"):
            (self.run_dir / left).unlink(missing_ok=True)
        shutil.rmtree(self.run_dir / "prometheus", ignore_errors=True)
        for pattern in ("bird-*.conf", "bird-*.ctl"):  # BIRD's configs and sockets (logs stay)
            for bird_file in self.run_dir.glob(pattern):
                bird_file.unlink(missing_ok=True)
        self.seal_key_file.unlink(missing_ok=True)
        for i in range(1, self.transceivers + 1):
            self.backend_key_file(i).unlink(missing_ok=True)
        self.secrets.remove()

    def status(self) -> dict[str, Any]:
        net = self.net
        alive = self._relays_up() if self.relays > 1 and net.exists() else []
        out: dict[str, Any] = {
            "vip": str(net.vips[0]),
            "vips": [str(v) for v in net.vips],
            "whip": [self.whip_url(i) for i in range(1, self.transceivers + 1)],
            "instance": self.instance,
            "up": net.exists(),
            "processes": {
                n: self._alive(n)
                for n in [r.process for r in self.relay_list()]
                + (["redis"] if self.relays > 1 else [])
                + ["ingress"]
                + (["icetcp"] if self.with_ice_tcp else [])
                + [f"trx{i}" for i in range(1, self.transceivers + 1)]
                + [n for n in ("scrape", "prometheus") if (self.run_dir / f"{n}.pid").exists()]
            },
            "relays": [
                {
                    "name": r.name,
                    "instance": r.instance,
                    "ns": r.ns,
                    "process": r.process,
                    "pid": self._alive(r.process),
                    "api_socket": str(r.api_socket),
                    "metrics": f"http://{r.metrics}/metrics",
                    "alive": r.name in alive if self.relays > 1 else net.exists(),
                }
                for r in self.relay_list()
            ],
            "logs": str(self.run_dir),
            "metrics": f"http://{self.metrics}/metrics",
            "whip_token": self.whip_token,
            "api_url": f"https://{self.api_listen}",
            "api_ca": str(self.secrets.cert),
            "prometheus": (
                f"http://{self.prometheus_listen}" if self._alive("prometheus") else None
            ),
        }
        out["namespaces"] = net.describe()["namespaces"]
        if self.nat_box.exists():
            out["nat"] = self.nat_box.describe()
        if self.relays > 1:
            out["redis"] = self.redis_url
        return out

    def exec(self, role: str, argv: list[str]) -> int:
        roles = {"client": self.net.client, "relay": self.net.relay, "fabric": self.net.fabric}
        roles |= {r.name: r.ns for r in self.relay_list()}
        roles |= {"router": self.fleet_net.router} if self.relays > 1 else {}
        roles |= {"nat": self.nat_box.ns} if self.nat_box.exists() else {}
        roles |= {f"trx{i}": self.net.trx(i) for i in range(1, self.transceivers + 1)}
        if role not in roles:
            raise LabError(f"no role {role!r}; roles: {', '.join(roles)}")
        if not topology.netns_exists(roles[role]):
            raise LabError(f"the lab is not up (no namespace {roles[role]})")
        return subprocess.call(["ip", "netns", "exec", roles[role], *argv])


def status_json(lab: Lab) -> str:
    return json.dumps(lab.status(), indent=2)


def client_cmd(lab: Lab, args: list[str]) -> list[str]:
    """The client role (scripts/roles/client.sh) in the lab's client namespace."""
    token = ["env", f"STEER_WHIP_TOKEN_FILE={lab.secrets.whip_file}"]  # the path, not the token
    return ["ip", "netns", "exec", lab.net.client, *token, str(ROLES / "client.sh"), *args]
