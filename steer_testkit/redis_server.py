"""A redis-server for the store and fleet tests and the fleet benchmark: the lab's
(pyctl.lab.redisserver) with a client and readers of what the daemon mirrored."""

from __future__ import annotations

import json
from typing import Any

import redis

from pyctl.daemon.signing import unsign
from pyctl.lab import redisserver


class RedisServer(redisserver.RedisServer):
    """The lab's redis-server, with a client and readers of what the daemon mirrored."""

    def start(self, timeout: float = 10.0) -> RedisServer:
        super().start(timeout)
        return self

    def client(self) -> Any:
        return redis.Redis(unix_socket_path=str(self.sock), socket_timeout=2)

    def hash_raw(self, instance: str) -> set[str]:
        return {k.decode() for k in self.client().hkeys(f"steer:{instance}:sessions")}

    def hash(self, instance: str, what: str = "sessions") -> dict[str, Any]:
        """The hash's records (a signed value read without checking its signature)."""
        raw = self.client().hgetall(f"steer:{instance}:{what}")
        return {k.decode(): json.loads(unsign(None, v) or b"") for k, v in raw.items()}
