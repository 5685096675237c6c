"""The `steerctl` root command group; subcommands live in sibling modules."""

from __future__ import annotations

from dataclasses import dataclass

import click

from pyctl.dataplane.loader import PIN_ROOT, BuildOptions, is_pinned

DEFAULT_INSTANCE = "default"
# Commands that only read or edit a running instance: without --instance they use the one
# instance that exists. Commands that create or tear down one (daemon, unload, lab, demo)
# never guess.
READERS = frozenset(
    {"sessions", "flows", "backends", "stats", "explain", "session", "backend", "key", "fleet"}
)


@dataclass(frozen=True)
class CliConfig:
    instance: str

    @property
    def build(self) -> BuildOptions:
        return BuildOptions(instance=self.instance)


def pinned_instances() -> list[str]:
    """Instances whose maps are pinned under PIN_ROOT, sorted."""
    if not PIN_ROOT.is_dir():
        return []
    return sorted(p.name for p in PIN_ROOT.iterdir() if p.is_dir() and is_pinned(p.name))


def pick_instance() -> tuple[str, str | None]:
    """The instance a reading command uses when none is named: `default` if it is pinned,
    else the only pinned one. Returns (instance, a note for stderr or None)."""
    found = pinned_instances()
    if DEFAULT_INSTANCE in found or not found:
        return DEFAULT_INSTANCE, None
    if len(found) == 1:
        note = f"steerctl: using instance {found[0]!r}, the only one (--instance to choose)"
        return found[0], note
    return DEFAULT_INSTANCE, (
        f"steerctl: instance {DEFAULT_INSTANCE!r} is not running; running: "
        f"{', '.join(found)} (choose with --instance or STEER_INSTANCE)"
    )


def _instance(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
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
    default=None,
    callback=_instance,
    help="Relay instance: names the pin directory /sys/fs/bpf/steer/NAME and the API socket. "
    f"Default: {DEFAULT_INSTANCE!r}; listings, explain, session and backend use the only "
    "running instance when there is exactly one.",
)
@click.pass_context
def cli(ctx: click.Context, instance: str | None) -> None:
    """steer: an XDP relay that steers WebRTC sessions from one VIP to their transceivers."""
    if instance is None:
        instance = DEFAULT_INSTANCE
        if ctx.invoked_subcommand in READERS and not ctx.resilient_parsing:
            instance, note = pick_instance()
            if note:
                click.echo(note, err=True)
    ctx.obj = CliConfig(instance=instance)
