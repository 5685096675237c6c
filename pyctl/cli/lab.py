"""`steerctl lab up|down|status|exec|kill|drain` and `steerctl demo`."""

from __future__ import annotations

import json
import sys

import click

from pyctl.cli.root import cli
from pyctl.lab.lifecycle import Lab, LabError, status_json
from pyctl.lab.nat import LabNat

PREFIX = click.option(
    "--prefix",
    default="steer",
    show_default=True,
    help="Namespace name prefix (steer-client, steer-relay, ...).",
)
TRANSCEIVERS = click.option(
    "--transceivers",
    "-n",
    type=click.IntRange(1, 16),
    default=2,
    show_default=True,
    help="How many transceiver namespaces.",
)
RELAYS = click.option(
    "--relays",
    type=click.IntRange(1, 9),
    default=1,
    show_default=True,
    help="Relays behind an ECMP router, each its own daemon (--fleet, one Redis) when > 1.",
)


@cli.group()
def lab() -> None:
    """The namespace lab: client, relay, transceivers, with the daemon and transceivers."""


@lab.command()
@PREFIX
@TRANSCEIVERS
@RELAYS
@click.option(
    "--nat",
    is_flag=True,
    help="Put the client behind a NAT (random source ports); with --relays N too.",
)
@click.option(
    "--bfd-interval-ms",
    type=click.IntRange(10, 10000),
    default=100,
    show_default=True,
    help="With --relays N: BFD interval on every relay's BGP sessions with the router.",
)
@click.option(
    "--bfd-multiplier",
    type=click.IntRange(1, 255),
    default=3,
    show_default=True,
    help="With --relays N: BFD intervals of silence before a relay is down.",
)
@click.option(
    "--prometheus",
    "with_prometheus",
    is_flag=True,
    help="Also start Prometheus scraping every relay and transceiver, with the shipped rules.",
)
@click.option("--json", "as_json", is_flag=True)
def up(
    prefix: str,
    transceivers: int,
    relays: int,
    nat: bool,
    bfd_interval_ms: int,
    bfd_multiplier: int,
    with_prometheus: bool,
    as_json: bool,
) -> None:
    """Build the lab and start the daemon(s) and the transceivers in the background."""
    lab_ = Lab(
        prefix,
        transceivers,
        nat=nat,
        relays=relays,
        bfd_interval_ms=bfd_interval_ms,
        bfd_multiplier=bfd_multiplier,
        prometheus=with_prometheus,
    )
    try:
        lab_.up(progress=lambda s: click.echo(s, err=True))
    except (LabError, OSError) as e:
        raise click.ClickException(f"{e}\n(run `steerctl lab down` to clean up)") from None
    if as_json:
        click.echo(status_json(lab_))
    else:
        names = [r.instance for r in lab_.relay_list()]
        label = "instance" if len(names) == 1 else "instances"
        click.echo(f"{label}: {' '.join(names)}  (steerctl --instance {names[0]} ...)")
        st = lab_.status()
        click.echo(f"WHIP: {' '.join(st['whip'])}")
        if st["prometheus"]:
            click.echo(f"Prometheus: {st['prometheus']}")


@lab.command()
@PREFIX
@TRANSCEIVERS
def down(prefix: str, transceivers: int) -> None:
    """Stop everything and remove every namespace, link and pin the lab made."""
    Lab.load(prefix, transceivers).down(progress=lambda s: click.echo(s, err=True))


@lab.command()
@PREFIX
@TRANSCEIVERS
@click.option("--json", "as_json", is_flag=True)
def status(prefix: str, transceivers: int, as_json: bool) -> None:
    """Addresses, WHIP URLs, relays and processes of the lab."""
    lab_ = Lab.load(prefix, transceivers)
    st = lab_.status()
    if as_json:
        click.echo(status_json(lab_))
        return
    click.echo(f"lab {prefix}: {'up' if st['up'] else 'down'}")
    click.echo(f"VIPs:  {', '.join(st['vips'])}")
    click.echo(f"WHIP:  {' '.join(st['whip'])}")
    click.echo(f"WHIP token: {st['whip_token'] or '-'}")
    click.echo(f"API:   {st['api_url']} (CA {st['api_ca']})")
    if st["prometheus"]:
        click.echo(f"Prometheus: {st['prometheus']}")
    click.echo(f"{'relay':<8} {'instance':<24} {'namespace':<20} {'daemon':<12} state")
    for r in st["relays"]:
        pid = f"pid {r['pid']}" if r["pid"] else "not running"
        state = "up" if r["alive"] else "down"
        click.echo(f"{r['name']:<8} {r['instance']:<24} {r['ns']:<20} {pid:<12} {state}")
    ns = st["namespaces"]
    if "router" in ns:  # what BIRD installed: BGP on the router, BFD on the transceivers
        click.echo(f"routes: the router's VIP via {' '.join(ns['router']['ecmp']) or '-'}")
        for name, n in ns.items():
            if "return" in n:
                click.echo(f"        {name}'s default via {' '.join(n['return']) or '-'}")
    relay_procs = {r["process"] for r in st["relays"]}  # listed above
    for name, pid in st["processes"].items():
        if name in relay_procs:
            continue
        click.echo(f"{name:<8} {'pid ' + str(pid) if pid else 'not running'}")
    click.echo(f"logs:  {st['logs']}")


def _nat(prefix: str) -> LabNat:
    box = Lab(prefix).nat_box
    if not box.exists():
        raise click.UsageError(f"lab {prefix} has no NAT (steerctl lab up --nat)")
    return box


@lab.command()
@PREFIX
@click.option("--json", "as_json", is_flag=True)
def rebind(prefix: str, as_json: bool) -> None:
    """NAT rebinding: every current client mapping gets a new source port now."""
    box = _nat(prefix)
    before = box.mappings()
    n = box.rebind()
    out = {"mappings_dropped": n, "before": before}
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"{n} mappings dropped; the client's next packets get new ports")
    for m in before:
        click.echo(f"  {m['client']:<22} was {m['public']:<22} -> {m['remote']}")


@lab.command()
@PREFIX
@click.argument("role", type=click.Choice(["client"]))
@click.option("--json", "as_json", is_flag=True)
def move(prefix: str, role: str, as_json: bool) -> None:
    """A network change: the client gets an address on another subnet and loses the old."""
    box = _nat(prefix)
    old = box.client_address()
    public = box.move()
    out = {"role": role, "old": old, "new": box.client_address(), "public": public}
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(f"client {old} -> {out['new']} (seen by the relay as {public})")


@lab.command(name="block-udp")
@PREFIX
@click.argument("role", type=click.Choice(["client"]))
@click.option("--undo", is_flag=True, help="Let UDP through again.")
def block_udp(prefix: str, role: str, undo: bool) -> None:
    """Make ROLE's namespace drop UDP (a network that allows only TCP), so its calls must
    use ICE over TCP on the VIP; --undo lets UDP through again."""
    from pyctl.daemon.firewall import FirewallError
    from pyctl.lab import blockudp

    ns = Lab.load(prefix).net.client
    try:
        if undo:
            was = blockudp.unblock(ns)
            click.echo(f"{role}: UDP {'let through again' if was else 'was not blocked'}")
        else:
            blockudp.block(ns)
            click.echo(f"{role}: UDP dropped in {ns} (undo: steerctl lab block-udp {role} --undo)")
    except (FirewallError, OSError) as e:
        raise click.ClickException(f"{ns}: {e}") from None


@lab.command(name="exec", context_settings={"ignore_unknown_options": True})
@PREFIX
@TRANSCEIVERS
@click.argument("role")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(prefix: str, transceivers: int, role: str, argv: tuple[str, ...]) -> None:
    """Run a command in a role's namespace: steerctl lab exec client -- ping 203.0.113.10"""
    try:
        sys.exit(Lab.load(prefix, transceivers).exec(role, list(argv)))
    except LabError as e:
        raise click.UsageError(str(e)) from None


@lab.command()
@PREFIX
@click.argument("what", type=click.Choice(["relay"]))
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def kill(prefix: str, what: str, name: str, as_json: bool) -> None:
    """A relay dies now, as a machine does: its daemon and its BIRD SIGKILLed, its XDP
    programs gone, its links silent (nftables drops everything; they stay up), its next
    hop gone from the transceivers' routes. The router drops it by BFD alone. NAME: relay2
    or its instance name."""
    try:
        out = Lab.load(prefix).kill_relay(name)
    except LabError as e:
        raise click.UsageError(str(e)) from None
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        pid = f"daemon pid {out['pid']} killed" if out["pid"] else "its daemon was not running"
        click.echo(f"{out['relay']} ({out['instance']}): {pid}, BIRD killed, links silent")
        click.echo(f"relays alive: {' '.join(out['alive']) or 'none'} (the router learns by BFD)")


@lab.command()
@PREFIX
@click.argument("what", type=click.Choice(["relay"]))
@click.argument("name")
@click.option("--undo", is_flag=True, help="Take sessions again and announce the VIPs again.")
@click.option("--json", "as_json", is_flag=True)
def drain(prefix: str, what: str, name: str, undo: bool, as_json: bool) -> None:
    """Drain a relay gracefully (`steerctl fleet drain` on it): it refuses registrations
    and tags its VIPs GRACEFUL_SHUTDOWN over BGP (RFC 8326), so the router's ECMP route
    drops it (keeping it as a backup) while its calls keep flowing. NAME: relay2 or its
    instance name."""
    try:
        out = Lab.load(prefix).drain_relay(name, undo=undo)
    except LabError as e:
        raise click.UsageError(str(e)) from None
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        verb = "announces its VIPs again" if undo else "announces its VIPs as graceful shutdown"
        click.echo(f"{out['relay']} ({out['instance']}): {out['state']}, {verb}")


@cli.command()
@click.option("--sessions", type=click.IntRange(1, 50), default=4, show_default=True)
@TRANSCEIVERS
@click.option("--seconds", type=click.FloatRange(1, 120), default=4.0, show_default=True)
@click.option(
    "--app",
    type=click.Choice(["echo", "speak"]),
    default="echo",
    show_default=True,
    help="What the transceivers run: echo (audio and messages back) or speak (a spoken reply).",
)
@click.option(
    "--rebind",
    is_flag=True,
    help="Client behind a NAT whose mappings all change mid-call; report media gaps (echo).",
)
@RELAYS
@click.option(
    "--kill-relay",
    is_flag=True,
    help="With --relays N: kill the relay carrying the most flows mid-call; report media gaps.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object on stdout; progress on stderr."
)
def demo(
    sessions: int,
    transceivers: int,
    seconds: float,
    app: str,
    rebind: bool,
    relays: int,
    kill_relay: bool,
    as_json: bool,
) -> None:
    """Lab up, real WebRTC sessions through one VIP, a summary, lab down."""
    from pyctl.lab.demo import run_demo

    if (rebind or kill_relay) and app != "echo":
        raise click.UsageError("--rebind and --kill-relay measure the echo app's media")
    if kill_relay and relays < 2:
        raise click.UsageError("--kill-relay needs --relays 2 or more")
    if rebind and relays > 1:
        raise click.UsageError("--rebind is for the one-relay lab")
    progress = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    try:
        report = run_demo(
            sessions,
            transceivers,
            seconds,
            progress=progress,
            app=app,
            rebind=rebind,
            relays=relays,
            kill_relay=kill_relay,
        )
    except (LabError, OSError, RuntimeError) as e:  # the lab or the client failed: no report
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(report, indent=2))
        if not report["ok"]:
            sys.exit(1)
    elif not report["ok"]:
        raise click.ClickException("some sessions failed (see the table above)")
