"""`steerctl explain`: what would the relay do with this packet?

Runs a frame through the instance's own programs with BPF_PROG_TEST_RUN, against its live
pinned maps, in its relay namespace (so routing is the real one), and reports the verdict,
the reason and the rewritten addresses. It compiles the same source with -DSTEER_EXPLAIN,
which compiles out every map write: asking changes no map and no counter (after katran's
KatranSimulator::getRealForFlow).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyctl.dataplane import topology
from pyctl.dataplane.frames import UdpView, read_udp
from pyctl.dataplane.loader import Attachment, BuildOptions, DataPlane, LoaderError, is_pinned
from pyctl.dataplane.maps import RouteMaps
from pyctl.dataplane.netns import netns
from pyctl.dataplane.testrun import run_xdp
from steer_common.shared import Reason, XdpAction


@dataclass(frozen=True)
class Explanation:
    side: str
    action: XdpAction
    reason: Reason
    before: UdpView | None
    after: UdpView | None
    routed: bool  # False: not attached anywhere, so routing was not evaluated

    def as_dict(self) -> dict[str, Any]:
        def view(v: UdpView | None) -> dict[str, str] | None:
            if v is None:
                return None
            return {
                "src": str(v.src),
                "dst": str(v.dst),
                "src_mac": v.src_mac,
                "dst_mac": v.dst_mac,
            }

        return {
            "side": self.side,
            "action": self.action.name,
            "reason": self.reason.label,
            "before": view(self.before),
            "after": view(self.after),
            "routed": self.routed,
        }


class Explainer:
    def __init__(self, instance: str) -> None:
        if not is_pinned(instance):
            raise LoaderError(f"instance {instance!r} has no pinned maps: is its daemon running?")
        self.dp = DataPlane(BuildOptions(instance=instance, explain=True))
        self.maps = RouteMaps(self.dp.bpf)
        self.reasons = self.dp.bpf[b"steer_explain_stats"]
        self.att = Attachment.load(instance)
        self.ifindex: dict[str, int] = {}
        if self.att:
            self.ifindex = {
                "public": topology.ifindex(self.att.netns, self.att.public),
                "internal": topology.ifindex(self.att.netns, self.att.internal),
            }

    def close(self) -> None:
        self.dp.close()

    def infer_side(self, view: UdpView | None) -> str:
        if view is None or view.dst in set(self.maps.vips()):
            return "public"
        socks = {s.sock for s in self.maps.sessions()}
        return "internal" if view.src in socks else "public"

    def explain(self, frame: bytes, side: str | None = None) -> Explanation:
        before = read_udp(frame)
        side = side or self.infer_side(before)
        self.reasons.clear()
        with netns(self.att.netns if self.att else None):
            res = run_xdp(self.dp.prog_fd(side), frame, self.ifindex.get(side, 0))
        counts = {r: sum(c.packets for c in self.reasons[self.reasons.Key(r)]) for r in Reason}
        (reason,) = [r for r, n in counts.items() if n]
        return Explanation(
            side, res.action, reason, before, read_udp(res.data), routed=side in self.ifindex
        )
