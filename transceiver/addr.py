"""UDP endpoints as the control API writes them: ``IP:PORT`` and ``[IPv6]:PORT``.

The transceiver keeps its own small copy instead of importing ``pyctl.endpoint``: pyctl
pulls in bcc, which transceiver hosts do not have.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

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

    @classmethod
    def of(cls, host: str, port: int) -> Endpoint:
        return cls(ipaddress.ip_address(host), port)

    @property
    def version(self) -> int:
        return self.ip.version

    def __str__(self) -> str:
        if self.ip.version == 6:
            return f"[{self.ip}]:{self.port}"
        return f"{self.ip}:{self.port}"
