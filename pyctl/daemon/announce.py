"""The relay announces its VIPs over BGP, driven by its health (docs/fleet.md, "Announcing
the VIP").

The routing daemon is BIRD 2, one instance per relay with its own config file and control
socket (`bird -c CONFIG -s SOCKET`), started apart from the steer daemon (a systemd unit on
a relay host; `steerctl lab` in the lab). This module writes that config and drives it
with `birdc -s SOCKET configure`:

- **Announce** (a static route per VIP in BIRD's table, exported to every peer) when the
  daemon is ready and the data plane attached; **withdraw** (the same config with no
  routes) when it has been unready for `withdraw_after` seconds.
- **Drain** (`steerctl fleet drain`) keeps announcing, tagged with the GRACEFUL_SHUTDOWN
  community (RFC 8326, 65535:0): a router that honours it (local-pref 0) takes the relay
  out of its ECMP set yet keeps the route as a backup, so traffic still flows when every
  relay is drained (a withdrawal would blackhole the VIP then).
- The announcement state lives in the config file, not in this process: a steer daemon
  that exits (or is killed) leaves BIRD announcing what it last wrote, and a new one
  re-takes control by rendering the same file again — so a restart never withdraws, while
  the pinned XDP program keeps forwarding. Only a lasting unreadiness does.
- A machine that dies stops answering BFD on the peering: the router drops its routes
  after `bfd_multiplier` × `bfd_interval_ms` with no one scripting it.
- BIRD also answers BFD for `bfd_neighbors` (the transceivers, `--bfd-neighbor`): they
  guard their return routes via this relay's internal address with BFD (docs/fleet.md,
  "The return direction"), so a dead relay leaves their routes as it leaves the router's.
  These sessions are in every config, announcing or not: a drain or a withdrawal never
  takes the relay out of the transceivers' routes (it still forwards).
- What is exported is filtered twice: only the static VIP routes exist in BIRD's table
  (no kernel or device routes are imported) and the export filter accepts exactly the
  VIPs' host prefixes; nothing is imported from the peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steer_common.endpoint import IPAddress

log = logging.getLogger(__name__)

TICK_S = 0.5
BIRDC_TIMEOUT_S = 5.0
STATIC = {4: "steer_vips4", 6: "steer_vips6"}  # the static protocols holding the VIP routes
GRACEFUL_SHUTDOWN = "(65535, 0)"  # RFC 8326's well-known community, in BIRD's notation
GRACEFUL_LINE = "# graceful shutdown: the VIP routes carry (65535, 0)\n"


@dataclass(frozen=True)
class Peer:
    """A BGP neighbour (the upstream router): its address and AS."""

    addr: IPAddress
    asn: int

    @property
    def name(self) -> str:
        """BIRD's protocol name for the session: `uplink_<address>`."""
        return "uplink_" + "".join(c if c.isalnum() else "_" for c in str(self.addr))


@dataclass(frozen=True)
class Bfd:
    interval_ms: int = 100
    multiplier: int = 3

    def block(self, interfaces: str = '"*"', neighbors: tuple[IPAddress, ...] = ()) -> str:
        """BIRD's `protocol bfd` with these intervals (both directions). BIRD answers BFD
        only for sessions it has: a protocol's (BGP's `bfd on`, a static `bfd` next hop)
        or a `neighbor` listed here."""
        return (
            "protocol bfd steer_bfd {\n"
            "  debug { states, events };  # every session added, removed, up or down, in the log\n"
            f"  interface {interfaces} {{\n"
            f"    min rx interval {self.interval_ms} ms;\n"
            f"    min tx interval {self.interval_ms} ms;\n"
            f"    multiplier {self.multiplier};\n"
            "  };\n" + "".join(f"  neighbor {n};\n" for n in neighbors) + "}\n"
        )


# BGP session timers that let a lab or a rebooted peer come up within seconds
SESSION_TIMERS = "  connect delay time 1;\n  connect retry time 2;\n  error wait time 1, 10;\n"


@dataclass(frozen=True)
class BgpConfig:
    """What `steerctl daemon --bgp-…` says about the routing daemon it drives."""

    socket: Path  # BIRD's control socket
    config: Path  # the config file BIRD reads (written here)
    local_as: int
    peers: tuple[Peer, ...]
    vips: tuple[IPAddress, ...]
    router_id: str | None = None
    bfd: Bfd = field(default_factory=Bfd)
    withdraw_after: float = 10.0  # seconds unready before withdrawing
    # BFD neighbours that are no BGP peer: the transceivers guarding their return routes
    bfd_neighbors: tuple[IPAddress, ...] = ()

    def render(self, announce: bool, graceful: bool = False) -> str:
        """BIRD 2's config: the VIP routes (none when withdrawn), the export filter (with
        `graceful`, tagging them GRACEFUL_SHUTDOWN), BFD and one BGP session per peer."""
        out = [
            "# written by steerctl daemon (pyctl/daemon/announce.py): changes are overwritten",
            f"# state: {'announce' if announce else 'withdrawn'}",
            *([GRACEFUL_LINE.rstrip()] if announce and graceful else []),
            "log stderr all;",
        ]
        if self.router_id:
            out.append(f"router id {self.router_id};")
        out += ["protocol device {}", self.bfd.block(neighbors=self.bfd_neighbors)]
        tag = f"{{ bgp_community.add({GRACEFUL_SHUTDOWN}); accept; }}" if graceful else "accept;"
        for fam in (4, 6):
            vips = [v for v in self.vips if v.version == fam]
            routes = "".join(f"  route {v}/{v.max_prefixlen} blackhole;\n" for v in vips)
            out.append(
                f"protocol static {STATIC[fam]} {{\n  ipv{fam};\n{routes if announce else ''}}}"
            )
            if vips:
                prefixes = ", ".join(f"{v}/{v.max_prefixlen}" for v in vips)
                out.append(
                    f"filter steer_export{fam} {{\n"
                    f'  if proto = "{STATIC[fam]}" && net ~ [ {prefixes} ] then {tag}\n'
                    "  reject;\n}"
                )
        for p in self.peers:
            fam = p.addr.version
            has = any(v.version == fam for v in self.vips)
            export = f"filter steer_export{fam}" if has else "none"
            out.append(
                f"protocol bgp {p.name} {{\n"
                f"  local as {self.local_as};\n"
                f"  neighbor {p.addr} as {p.asn};\n"
                "  bfd on;\n"
                f"{SESSION_TIMERS}"
                f"  ipv{fam} {{ import none; export {export}; }};\n"
                "}"
            )
        return "\n".join(out) + "\n"


def announced_in(text: str) -> bool:
    """Whether a config this module wrote announces (the state line)."""
    return "# state: announce\n" in text


def graceful_in(text: str) -> bool:
    """Whether a config this module wrote tags the VIPs GRACEFUL_SHUTDOWN (a drain)."""
    return GRACEFUL_LINE in text


def write_config(path: Path, text: str) -> bool:
    """Write `text` to `path` atomically; False when it was already that."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


async def birdc(socket: Path, *args: str) -> tuple[int, str]:
    """Run `birdc -s SOCKET ARGS…`: its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        "birdc",
        "-s",
        str(socket),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), BIRDC_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return 1, "birdc timed out"
    return proc.returncode or 0, out.decode(errors="replace")


def parse_sessions(text: str) -> dict[str, str]:
    """`birdc show protocols` → {BGP protocol name: its state ("Established", "Active"…)}."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "BGP":
            out[parts[0]] = parts[5]
    return out


@dataclass
class Announcer:
    """Keeps BIRD announcing this relay's VIPs while it is healthy (see the module doc)."""

    cfg: BgpConfig
    ready: Callable[[], Awaitable[bool]]  # the daemon is ready and its data plane attached
    draining: Callable[[], bool]
    want: bool = False  # what the config says now
    graceful: bool = False  # the routes carry GRACEFUL_SHUTDOWN (the relay drains)
    applied: bool = False  # BIRD has taken the config this process wrote
    sessions: dict[str, str] = field(default_factory=dict)
    unready_since: float | None = None
    last_error: str = ""
    changes: int = 0

    @property
    def established(self) -> int:
        return sum(1 for s in self.sessions.values() if s == "Established")

    @property
    def announced(self) -> bool:
        """The VIPs are offered to at least one established peer."""
        return self.want and self.applied and self.established > 0

    async def tick(self) -> None:
        now = time.monotonic()
        ok = await self.ready()
        if ok:
            self.unready_since = None
        elif self.unready_since is None:
            self.unready_since = now
        # starting to announce needs readiness now; an announcing relay rides out
        # `withdraw_after` of unreadiness (a stall, a slow restart) before it withdraws.
        # A drain changes only the community: the relay still forwards.
        if ok:
            want = True
        else:
            since = now if self.unready_since is None else self.unready_since
            want = self.want and now - since < self.cfg.withdraw_after
        graceful = self.draining()
        changed = write_config(self.cfg.config, self.cfg.render(want, graceful))
        if changed or not self.applied or want != self.want:
            if want != self.want or changed:
                self.changes += 1
                tagged = " (graceful shutdown, 65535:0)" if want and graceful else ""
                log.warning("bgp: %s the VIPs%s", "announcing" if want else "withdrawing", tagged)
            self.want, self.graceful = want, graceful
            code, out = await birdc(self.cfg.socket, "configure")
            self.applied = code == 0 and "Reconfigur" in out
            self.last_error = "" if self.applied else out.strip()[-200:]
            if not self.applied:
                log.warning("bgp: birdc configure failed: %s", self.last_error)
        code, out = await birdc(self.cfg.socket, "show", "protocols")
        self.sessions = parse_sessions(out) if code == 0 else {}
        if code != 0:
            self.applied = False  # BIRD is not there: configure again when it is
            self.last_error = out.strip()[-200:]

    async def run(self) -> None:
        # the first tick takes over the state BIRD kept from the previous daemon
        text = read_config(self.cfg.config)
        self.want, self.graceful = announced_in(text), graceful_in(text)
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("bgp: announcement pass failed; retrying")
            await asyncio.sleep(TICK_S)

    def status(self) -> dict[str, Any]:
        return {
            "announced": self.announced,
            "announcing": self.want,
            "graceful_shutdown": self.want and self.graceful,
            "applied": self.applied,
            "vips": [str(v) for v in self.cfg.vips],
            "sessions": dict(sorted(self.sessions.items())),
            "established": self.established,
            "peers": len(self.cfg.peers),
            "bfd": {"interval_ms": self.cfg.bfd.interval_ms, "multiplier": self.cfg.bfd.multiplier},
            "unready_s": (
                0.0
                if self.unready_since is None
                else round(time.monotonic() - self.unready_since, 1)
            ),
            "withdraw_after_s": self.cfg.withdraw_after,
            "error": self.last_error,
        }


def idle_status() -> dict[str, Any]:
    """What a relay without --bgp-socket says: it announces nothing itself."""
    return {"announced": False, "announcing": False, "enabled": False}


def read_config(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
