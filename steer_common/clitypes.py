"""Click parameter types for addresses, shared by steerctl and steer-transceiver.

Imports only click and steer_common.endpoint (no bcc), so the transceiver can use it."""

from __future__ import annotations

from typing import Any

import click

from steer_common.endpoint import Endpoint


class EndpointType(click.ParamType):
    """IP:PORT or [IPv6]:PORT."""

    name = "IP:PORT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Endpoint):
            return value
        try:
            return Endpoint.parse(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


class HostPortType(click.ParamType):
    """HOST:PORT to listen on (HOST may be a name; IPv6 as [IP]:PORT), as (host, port).
    With `any_port`, port 0 (the kernel picks a free one) is allowed."""

    name = "HOST:PORT"

    def __init__(self, any_port: bool = False) -> None:
        self.lowest = 0 if any_port else 1

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        host, sep, port = str(value).rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or not self.lowest <= int(port) < 65536:
            self.fail(f"{value!r}: expected HOST:PORT with a port {self.lowest}-65535", param, ctx)
        return (host, int(port))
