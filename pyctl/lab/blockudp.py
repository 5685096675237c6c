"""`steerctl lab block-udp ROLE`: a namespace whose network drops UDP, as offices, hotels
and captive networks do, so a client there must fall back to ICE over TCP (pyctl/tcp).

An nftables table `inet steer_block_udp` in the role's namespace drops UDP in and out on
every interface but loopback, counted (`udp_in`, `udp_out`); `--undo` deletes it.
"""

from __future__ import annotations

from typing import Any

from pyctl.daemon.firewall import FirewallError, match, meta, nft

TABLE = "steer_block_udp"
FAMILY = "inet"
COUNTERS = {"input": "udp_in", "output": "udp_out"}


def _obj(**extra: Any) -> dict[str, Any]:
    return {"family": FAMILY, "table": TABLE, **extra}


def block(ns: str) -> None:
    """Drop UDP in `ns` (idempotent: the table is re-made in one transaction)."""
    table = {"family": FAMILY, "name": TABLE}
    cmds: list[dict[str, Any]] = [{"add": {"table": table}}, {"flush": {"table": table}}]
    for hook, counter in COUNTERS.items():
        cmds.append({"add": {"counter": _obj(name=counter)}})
        chain = _obj(name=hook, type="filter", hook=hook, prio=0, policy="accept")
        cmds.append({"add": {"chain": chain}})
        dev = "iifname" if hook == "input" else "oifname"
        rule = _obj(
            chain=hook,
            expr=[
                match(meta(dev), "lo", "!="),
                match(meta("l4proto"), "udp"),
                {"counter": counter},
                {"drop": None},
            ],
        )
        cmds.append({"add": {"rule": rule}})
    nft(ns, cmds)


def unblock(ns: str) -> bool:
    """Let UDP through again; False if it was not blocked."""
    try:
        nft(ns, [{"delete": {"table": {"family": FAMILY, "name": TABLE}}}])
    except FirewallError:
        return False
    return True


def dropped(ns: str) -> dict[str, int] | None:
    """UDP packets dropped so far by direction, or None when UDP is not blocked."""
    try:
        out = nft(ns, [{"list": {"counters": {"family": FAMILY, "table": TABLE}}}])
    except FirewallError:
        return None
    found = {}
    for item in out.get("nftables", []):
        c = item.get("counter")
        if c and c.get("table") == TABLE:
            found[c["name"]] = int(c["packets"])
    return found
