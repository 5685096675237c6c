"""Click parameter types and helpers shared by the steerctl commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pyctl.cli.root import CliConfig
from steer_common.apiclient import ApiError, SyncApiClient
from steer_common.clitypes import EndpointType, HostPortType
from steer_common.paths import api_socket
from steer_common.shared import BACKEND_ID_MAX, BACKEND_ID_MIN

ENDPOINT = EndpointType()
HOST_PORT = HostPortType()
BACKEND_ID = click.IntRange(BACKEND_ID_MIN, BACKEND_ID_MAX)
# the long-running commands' (daemon, icetcp) --log-level
LOG_LEVEL = click.option(
    "--log-level",
    envvar="STEER_LOG_LEVEL",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)


def api_client(ctx: click.Context) -> SyncApiClient:
    """The daemon's API: STEER_API_URL (https with a self-signed certificate: STEER_API_CA)
    if set, else the unix socket STEER_API_SOCKET or /run/steer/<instance>.sock; the bearer
    token from STEER_API_TOKEN_FILE or STEER_API_TOKEN."""
    import os

    from steer_common.credentials import CredentialError, token_from

    cfg: CliConfig = ctx.find_object(CliConfig)  # type: ignore[assignment]
    try:
        token = token_from(None, "STEER_API_TOKEN")
    except CredentialError as e:
        raise click.UsageError(str(e)) from None
    url = os.environ.get("STEER_API_URL")
    if url:
        return SyncApiClient(url=url, token=token, ca=os.environ.get("STEER_API_CA"))
    sock = os.environ.get("STEER_API_SOCKET") or str(api_socket(cfg.instance))
    return SyncApiClient(socket=Path(sock), token=token)


def call_api(ctx: click.Context, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call the API; a refusal prints the API's message on stderr and exits 1."""
    try:
        return getattr(api_client(ctx), method)(*args, **kwargs)
    except ApiError as e:
        where = f" [{e.field}]" if e.field else ""
        click.echo(f"error{where}: {e.message}", err=True)
        ctx.exit(1)
    except OSError as e:  # aiohttp's connection errors are OSErrors
        click.echo(f"error: cannot reach the steer daemon: {e}", err=True)
        ctx.exit(1)
