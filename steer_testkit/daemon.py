"""A real `steerctl daemon` for the control-plane tests and the fleet benchmark: a lab
network with a unique prefix, the daemon subprocess on it (unique instance), a raw HTTP
client for its unix socket, an independent view of its pinned maps, cleanup that runs
even on failure, and the API and CLI calls the tests share."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from click.testing import CliRunner, Result

from pyctl.cli import cli
from pyctl.dataplane.loader import PIN_ROOT, RUN_DIR, BuildOptions, compile_bpf, unload
from pyctl.dataplane.maps import RouteMaps
from pyctl.lab.net import CLIENT4, VIP4, LabNet
from steer_common.endpoint import Endpoint
from steer_common.paths import api_socket

STEERCTL = str(Path(sys.executable).with_name("steerctl"))
TAG = f"{os.getpid() % 100000}"
IDLE_TIMEOUT = 3.0
TOKEN = "test-token-1234567"  # the operator token of the shared daemon


def wait_for(
    pred: Callable[[], object], timeout: float = 10.0, what: str = "condition", step: float = 0.01
) -> float:
    """Seconds until pred() held, polled every `step`; AssertionError after `timeout`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(step)
    raise AssertionError(f"{what} not within {timeout}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("steer", timeout=15)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(15)
        self.sock.connect(self.path)


@dataclass
class Http:
    """Raw requests, so tests see exact status codes and bodies."""

    socket_path: str | None = None
    tcp: tuple[str, int] | None = None
    token: str | None = None  # sent unless the call gives its own Authorization

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        conn: http.client.HTTPConnection
        if self.tcp:
            conn = http.client.HTTPConnection(*self.tcp, timeout=15)
        else:
            assert self.socket_path
            conn = UnixHTTPConnection(self.socket_path)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = dict(headers or {})
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            text = resp.read()
        finally:
            conn.close()
        return resp.status, json.loads(text) if text else None


@dataclass
class Daemon:
    """A `steerctl daemon` subprocess."""

    net: LabNet
    instance: str
    log_path: Path
    extra: list[str] = field(default_factory=list)
    metrics_port: int = 0
    token: str | None = None  # the operator token, when the daemon has one
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> str:
        return str(api_socket(self.instance))

    @property
    def http(self) -> Http:
        return Http(self.socket_path, token=self.token)

    def argv(self) -> list[str]:
        argv = [
            STEERCTL,
            "--instance",
            self.instance,
            "daemon",
            "--netns",
            self.net.relay,
            "--public",
            "pub",
            "--internal",
            "int",
        ]
        for v in self.net.vips:
            argv += ["--vip", str(v)]
        for n in self.net.client_nets:
            argv += ["--allow-source", n]
        if self.metrics_port:
            argv += ["--metrics", f"127.0.0.1:{self.metrics_port}"]
        return argv + self.extra

    def start(self, timeout: float = 60.0) -> Daemon:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            try:
                if self.http.call("GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"daemon not ready after {timeout}s:\n{self.log()}")

    def signal(self, sig: int, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


_VIEWS: list[Any] = []  # every view opened below, until close_views()


def pinned_bpf(instance: str) -> Any:
    """The instance's pinned maps (steer_config too), opened by this test process
    independently of the daemon; closed by close_views() (tests/conftest.py, per module)."""
    bpf = _open(instance)
    _VIEWS.append(bpf)
    return bpf


def _open(instance: str) -> Any:
    assert (PIN_ROOT / instance).exists()
    return compile_bpf(BuildOptions(instance=instance), text='#include "steer_maps.h"')


@contextmanager
def open_maps(instance: str) -> Iterator[RouteMaps]:
    """A view that outlives modules (a session fixture's), closed on exit."""
    with _open(instance) as bpf:
        yield RouteMaps(bpf)


def close_views() -> None:
    """Close the fds of every view pinned_bpf() opened: bcc frees nothing on its own, and
    a test process that kept them all held ~1,400 map fds and gigabytes of vmalloc."""
    while _VIEWS:
        _VIEWS.pop().cleanup()


def bpf_fds() -> int:
    """This process's open BPF map and program fds."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with suppress(OSError):  # the listing's own fd, gone by now
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("anon_inode:bpf-")
    return n


def maps_view(instance: str) -> RouteMaps:
    return RouteMaps(pinned_bpf(instance))


def vips(maps: RouteMaps) -> list[str]:
    return sorted(str(Endpoint.from_c(k)) for k in maps.vip_map)


def snapshot(maps: RouteMaps) -> dict[str, Any]:
    """Everything the daemon writes, comparable before and after a refused request."""
    return {
        "vips": vips(maps),
        "sessions": maps.sessions(),
        "socks": sorted(str(Endpoint.from_c(k)) for k in maps.sock_map),
        "backends": sorted(maps.backends(), key=lambda b: b.id),
        "flows": sorted((str(f.client), str(f.vip), str(f.sock)) for f in maps.flows()),
        "rflows": sorted(
            (str(Endpoint.from_c(k.sock)), str(Endpoint.from_c(k.client))) for k in maps.rflow_map
        ),
    }


class FlowEntry(NamedTuple):
    sock: Endpoint
    backend: int
    flags: int


def flow_at(maps: RouteMaps, client: Endpoint, vip: Endpoint = VIP4) -> FlowEntry | None:
    """The flow map's entry for (client, vip) with its raw flags, or None."""
    k = maps.flow_map.Key()
    client.fill(k.client)
    vip.fill(k.vip)
    try:
        v = maps.flow_map[k]
    except KeyError:
        return None
    return FlowEntry(Endpoint.from_c(v.sock), int(v.backend_id), int(v.flags))


def rflow_leaf(maps: RouteMaps, sock: Endpoint, client: Endpoint) -> Any | None:
    """The reverse flow map's raw leaf for (sock, client), or None."""
    k = maps.rflow_map.Key()
    sock.fill(k.sock)
    client.fill(k.client)
    try:
        return maps.rflow_map[k]
    except KeyError:
        return None


def rflow_at(maps: RouteMaps, sock: Endpoint, client: Endpoint) -> Endpoint | None:
    """The VIP the reverse flow (sock, client) answers from, or None."""
    leaf = rflow_leaf(maps, sock, client)
    return None if leaf is None else Endpoint.from_c(leaf.vip)


def make_lab(prefix: str) -> LabNet:
    net = LabNet(prefix=prefix, transceivers=2)
    net.down()
    net.up()  # also turns tx checksum offload off on the senders (topology.set_tx_checksum)
    return net


def cleanup(net: LabNet | None, instance: str, daemons: list[Daemon]) -> None:
    for d in daemons:
        d.stop()
    unload(instance)
    for suffix in (".sock", ".lock", ".attach.json"):
        (RUN_DIR / f"{instance}{suffix}").unlink(missing_ok=True)
    if net is not None:
        net.down()


def cleanup_fleet(names: list[str], daemons: list[Daemon], nets: list[LabNet]) -> None:
    """A fleet built one relay at a time (instance names[k], its daemons[k] on nets[k]),
    torn down however far it got: fewer daemons and nets than names after a failure."""
    for name, d, net in zip(names, daemons, nets, strict=False):
        cleanup(net, name, [d])
    for name in names[len(daemons) :]:
        cleanup(None, name, [])
    for net in nets[len(daemons) :]:
        net.down()


@dataclass
class Env:
    net: LabNet
    daemon: Daemon
    maps: RouteMaps
    tcp_port: int

    @property
    def http(self) -> Http:
        return self.daemon.http

    def trx_sock(self, i: int, port: int, v6: bool = False) -> Endpoint:
        ip = self.net.trx_ip6(i) if v6 else self.net.trx_ip4(i)
        return Endpoint.parse(f"[{ip}]:{port}" if v6 else f"{ip}:{port}")

    def client_ep(self, port: int) -> Endpoint:
        return Endpoint.parse(f"{CLIENT4}:{port}")


def quote(ufrag: str) -> str:
    from urllib.parse import quote as q

    return q(ufrag, safe="")


def add_backend(env: Env, backend: int, ip: Any) -> None:
    """Register a backend at `ip` unless it is there already (a session's socket must be on
    a registered backend's address)."""
    status, body = env.http.call("POST", "/v1/backends", {"id": backend, "addr": str(ip)})
    assert status in (201, 409), body


def add_session(env: Env, ufrag: str, sock: Endpoint, backend: int = 1, **kw: Any) -> Any:
    add_backend(env, backend, sock.ip)
    status, body = env.http.call(
        "POST", "/v1/sessions", {"ufrag": ufrag, "sock": str(sock), "backend": backend, **kw}
    )
    assert status == 201, body
    return body["session"]


def steerctl(env: Env, *args: str, input: str | None = None) -> Result:
    token = {"STEER_API_TOKEN": env.daemon.token or ""}
    return CliRunner().invoke(
        cli, ["--instance", env.daemon.instance, *args], input=input, env=token
    )
