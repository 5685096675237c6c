"""The second wall: an nftables table each daemon instance owns in the relay's namespace.

XDP is the first wall: everything it steers it rewrites and redirects, and a redirected
frame never enters the kernel's IP layer, so netfilter never sees steer's traffic. What XDP
passes to the kernel is what the kernel would forward on its own, and the relay keeps
forwarding on only because bpf_fib_lookup needs it. This table makes that forwarding path
carry nothing into or out of the public interface, so a data-plane bug (a fragment, a TCP
segment or an ICMP error the program lets through) is not a leak:

- forward: drop everything that enters or leaves through the public interface (counted
  `from_public` / `to_public`), except
  - UDP from the internal side whose source is a VIP (counted `vip_return`): a return
    packet XDP has already NATed but passed to the kernel because bpf_fib_lookup had no
    neighbour for the client yet (PASS_FIB_FAILED); forwarding it makes the kernel
    resolve the neighbour, and it carries no internal address;
  Nothing from the public side is let in on the kernel's path: a rewritten client packet
  that XDP passes for want of a transceiver neighbour is dropped, which is why the
  daemon resolves transceiver next hops before it answers a registration;
- input: the public side reaches only addresses configured on the public interface
  (strong host model, counted `public_to_relay`): not the relay's internal addresses,
  and not the VIPs (local to the kernel only for the ICE-TCP relay), except
  - TCP to a VIP on an ICE-TCP port (`tcp_ports`, `steerctl daemon --ice-tcp-port`;
    counted `ice_tcp`): the ICE-TCP relay's clients (pyctl/tcp). Its UDP to and from the
    transceivers is the relay's own output and input on the internal side, which this
    table leaves alone.
  The relay's own output is left to its routing table.

The table is `inet steer_<instance>`, written through libnftables' JSON API (Debian's
python3-nftables) in one transaction that first flushes it: a restarted daemon re-installs
it atomically, the named counters survive, and there is never a moment without the wall.
`steerctl unload` deletes it; the daemon leaves it in place when it exits, like the XDP
programs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pyctl.dataplane.netns import netns
from steer_common.endpoint import Endpoint

log = logging.getLogger("steer.firewall")

FAMILY = "inet"
COUNTERS = ("from_public", "to_public", "public_to_relay", "vip_return", "ice_tcp")
# iif-local, broadcast and multicast (neighbour discovery) are all the relay answers on
LOCAL_TYPES = ["local", "broadcast", "multicast"]


class FirewallError(RuntimeError):
    """libnftables refused a command; the message is its error output."""


def table_name(instance: str) -> str:
    return f"steer_{instance}"


def nft(ns: str | None, commands: list[dict[str, Any]]) -> Any:
    """Run JSON `commands` as one transaction in namespace `ns`; return the output."""
    from nftables import Nftables  # Debian's python3-nftables, through --system-site-packages

    with netns(ns):  # the context's netlink socket belongs to the namespace it is used in
        ctx = Nftables()
        rc, out, err = ctx.json_cmd({"nftables": commands})
    if rc != 0:
        raise FirewallError(err.strip() or f"libnftables returned {rc}")
    return out


def match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    """An nftables JSON match expression: `left` `op` `right`."""
    return {"match": {"op": op, "left": left, "right": right}}


def meta(key: str) -> dict[str, Any]:
    """An nftables JSON meta expression (iifname, oifname, l4proto, …)."""
    return {"meta": {"key": key}}


def _tcp(field: str) -> dict[str, Any]:
    return {"payload": {"protocol": "tcp", "field": field}}


@dataclass(frozen=True)
class Wall:
    instance: str
    netns: str | None
    public: str
    internal: str
    vips: tuple[Endpoint, ...] = ()
    tcp_ports: tuple[int, ...] = ()  # ICE-TCP on the VIPs (pyctl/tcp)

    @property
    def table(self) -> str:
        return table_name(self.instance)

    def _obj(self, **extra: Any) -> dict[str, Any]:
        return {"family": FAMILY, "table": self.table, **extra}

    def _chain(self, name: str, hook: str) -> dict[str, Any]:
        chain = self._obj(name=name, type="filter", hook=hook, prio=0, policy="accept")
        return {"add": {"chain": chain}}

    def _rule(self, chain: str, *expr: dict[str, Any]) -> dict[str, Any]:
        return {"add": {"rule": self._obj(chain=chain, expr=list(expr))}}

    def commands(self) -> list[dict[str, Any]]:
        """The whole table as one transaction: create, flush, fill."""
        table = {"family": FAMILY, "name": self.table}
        cmds: list[dict[str, Any]] = [
            {"add": {"table": table}},
            {"flush": {"table": table}},  # rules go, named counters stay
            *({"add": {"counter": self._obj(name=c)}} for c in COUNTERS),
            self._chain("forward", "forward"),
            self._chain("input", "input"),
        ]
        from_pub = match(meta("iifname"), self.public)
        to_pub = match(meta("oifname"), self.public)
        for version, proto in ((4, "ip"), (6, "ip6")):
            vips = [v for v in self.vips if v.ip.version == version]
            if vips:
                cmds.append(
                    self._rule(
                        "forward",
                        match(meta("iifname"), self.internal),
                        to_pub,
                        match(
                            {"payload": {"protocol": proto, "field": "saddr"}},
                            {"set": sorted({str(v.ip) for v in vips})},
                        ),
                        match(
                            {"payload": {"protocol": "udp", "field": "sport"}},
                            {"set": sorted({v.port for v in vips})},
                        ),
                        {"counter": "vip_return"},
                        {"accept": None},
                    )
                )
            if vips and self.tcp_ports:
                cmds.append(
                    self._rule(
                        "input",
                        from_pub,
                        match(
                            {"payload": {"protocol": proto, "field": "daddr"}},
                            {"set": sorted({str(v.ip) for v in vips})},
                        ),
                        match(_tcp("dport"), {"set": sorted(set(self.tcp_ports))}),
                        {"counter": "ice_tcp"},
                        {"accept": None},
                    )
                )
        cmds += [
            self._rule("forward", from_pub, {"counter": "from_public"}, {"drop": None}),
            self._rule("forward", to_pub, {"counter": "to_public"}, {"drop": None}),
            self._rule(
                "input",
                from_pub,
                match(
                    {"fib": {"result": "type", "flags": ["daddr", "iif"]}},
                    {"set": LOCAL_TYPES},
                    "!=",
                ),
                {"counter": "public_to_relay"},
                {"drop": None},
            ),
        ]
        return cmds

    def install(self) -> bool:
        """Create or re-install the table; True if it was there already (adopted)."""
        adopted = exists(self.instance, self.netns)
        nft(self.netns, self.commands())
        log.info(
            "firewall: table %s %s in netns %s (%s): nothing forwarded to or from %s",
            FAMILY,
            self.table,
            self.netns or "-",
            "adopted" if adopted else "created",
            self.public,
        )
        return adopted


def exists(instance: str, ns: str | None) -> bool:
    try:
        nft(ns, [{"list": {"table": {"family": FAMILY, "name": table_name(instance)}}}])
    except FirewallError:
        return False
    return True


def counters(instance: str, ns: str | None) -> dict[str, tuple[int, int]]:
    """Named counter -> (packets, bytes); empty when the table is not there."""
    if not exists(instance, ns):
        return {}
    out = nft(ns, [{"list": {"counters": {"family": FAMILY, "table": table_name(instance)}}}])
    found = {}
    for item in out.get("nftables", []):
        c = item.get("counter")
        if c and c.get("table") == table_name(instance):
            found[c["name"]] = (int(c["packets"]), int(c["bytes"]))
    return found


def remove(instance: str, ns: str | None) -> bool:
    """Delete the instance's table; False if there was none."""
    if not exists(instance, ns):
        return False
    table = {"family": FAMILY, "name": table_name(instance)}
    nft(ns, [{"delete": {"table": table}}])
    log.info("firewall: table %s %s removed (netns %s)", FAMILY, table_name(instance), ns or "-")
    return True
