"""Where a connection's first Binding Request goes: the XDP program's decision
(steer.bpf.c stun_request, seal_route) made from the pinned maps, one lookup each.

A registered ufrag goes to its session's socket; an unregistered one that decodes as a
sealed ufrag goes to the port it names on its backend's address, if its key id is valid,
its MAC holds and the port is in the sealed range (steer_config); a backend marked down
takes nothing. Anything else is refused with the reason.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pyctl.dataplane.maps import RouteMaps, get_entry
from steer_common import seal
from steer_common.endpoint import Endpoint
from steer_common.shared import BackendState

SEAL_PORTS_DEFAULT = (1024, 65535)  # steer.bpf.c seal_port_ok with no configured range


class Refusal(enum.Enum):
    UNKNOWN_UFRAG = "unknown_ufrag"
    BACKEND_DOWN = "backend_down"


@dataclass(frozen=True)
class Route:
    sock: Endpoint
    backend: int
    sealed: bool


class Router:
    """Routes ufrags with the pinned maps (the CLI's maps-only compile, listings.open_maps)."""

    def __init__(self, maps: RouteMaps) -> None:
        self.maps = maps

    def route(self, ufrag: str) -> Route | Refusal:
        s = self.maps.get_session(ufrag)
        if s is not None:
            found = Route(s.sock, s.backend_id, sealed=False)
        else:
            sealed = self._sealed(ufrag)
            if sealed is None:
                return Refusal.UNKNOWN_UFRAG
            found = sealed
        b = self.maps.backend(found.backend)
        if b is not None and b.state == BackendState.DOWN:
            return Refusal.BACKEND_DOWN
        return found

    def _sealed(self, ufrag: str) -> Route | None:
        if seal.unseal(ufrag) is None:  # not shaped like one: no key lookups
            return None
        keys = {k.id: k.key for k in seal.valid_keys(self.maps.seal_key_map)}
        fields = seal.verify(keys, ufrag)
        if fields is None or not self._port_ok(fields.port):
            return None
        b = self.maps.backend(fields.backend)
        if b is None or b.addr is None:
            return None
        return Route(Endpoint(b.addr.ip, fields.port), fields.backend, sealed=True)

    def _port_ok(self, port: int) -> bool:
        cfg = get_entry(self.maps.config_map, self.maps.config_map.Key(0))
        lo, hi = (cfg.seal_port_lo, cfg.seal_port_hi) if cfg and cfg.seal_port_hi else (0, 0)
        if not hi:
            lo, hi = SEAL_PORTS_DEFAULT
        return lo <= port <= hi
