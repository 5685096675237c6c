"""The `steerctl` root command group; subcommands live in sibling modules."""

from __future__ import annotations

from dataclasses import dataclass

import click

from pyctl.loader import BuildOptions


@dataclass(frozen=True)
class CliConfig:
    instance: str

    @property
    def build(self) -> BuildOptions:
        return BuildOptions(instance=self.instance)


def _instance(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        BuildOptions(instance=value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


@click.group(
    context_settings={"auto_envvar_prefix": "STEER", "help_option_names": ["-h", "--help"]}
)
@click.option(
    "--instance",
    default="default",
    show_default=True,
    callback=_instance,
    help="Relay instance: names the pin directory /sys/fs/bpf/steer/NAME and the API socket.",
)
@click.pass_context
def cli(ctx: click.Context, instance: str) -> None:
    """steer: an XDP relay that steers WebRTC sessions from one VIP to their transceivers."""
    ctx.obj = CliConfig(instance=instance)
