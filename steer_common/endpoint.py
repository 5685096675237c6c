"""UDP endpoints (``IP:PORT``, ``[IPv6]:PORT``) and their struct steer_addr form.

Imports nothing heavy (no bcc): the transceiver uses it too."""

from __future__ import annotations

import ctypes
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from steer_common.shared import Family

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Endpoint:
    ip: IPAddress
    port: int

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """``1.2.3.4:3478`` or ``[2001:db8::1]:3478``; raises ValueError with the reason."""
        text = text.strip()
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
            if not sep:
                raise ValueError(f"{text!r}: expected [IPv6]:PORT")
        else:
            host, sep, port = text.rpartition(":")
            if not sep or ":" in host:
                raise ValueError(f"{text!r}: expected IP:PORT (IPv6 as [IP]:PORT)")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r}: port must be 1-65535")
        return cls(ip, int(port))

    @staticmethod
    def host_of(text: str) -> str:
        """The address of an endpoint as str(Endpoint) wrote it, cut out without parsing
        (30x cheaper than parse: the daemon does it for every session on its loop)."""
        return text.rpartition(":")[0].removeprefix("[").removesuffix("]")

    @classmethod
    def of(cls, host: str, port: int) -> Endpoint:
        return cls(ipaddress.ip_address(host), port)

    def sort_key(self) -> tuple[int, bytes, int]:
        """Orders IPv4 before IPv6 (the addresses themselves do not compare across)."""
        return (self.ip.version, self.ip.packed, self.port)

    @property
    def family(self) -> Family:
        return Family.V4 if self.ip.version == 4 else Family.V6

    def __str__(self) -> str:
        if self.ip.version == 6:
            return f"[{self.ip}]:{self.port}"
        return f"{self.ip}:{self.port}"

    def fill(self, addr: Any) -> Any:
        """Write this endpoint into a bcc-generated ``struct steer_addr`` and return it."""
        ctypes.memset(ctypes.addressof(addr), 0, ctypes.sizeof(addr))
        packed = self.ip.packed
        ctypes.memmove(ctypes.addressof(addr.ip), packed, len(packed))
        addr.port = socket.htons(self.port)
        addr.family = self.family
        return addr

    @classmethod
    def from_c(cls, addr: Any) -> Endpoint:
        """Read a ``struct steer_addr``."""
        raw = bytes(addr.ip)
        ip: IPAddress
        if addr.family == Family.V4:
            ip = ipaddress.IPv4Address(raw[:4])
        elif addr.family == Family.V6:
            ip = ipaddress.IPv6Address(raw)
        else:
            raise ValueError(f"struct steer_addr with unknown family {addr.family}")
        return cls(ip, socket.ntohs(addr.port))
