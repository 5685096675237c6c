"""`steerctl explain`: run a described packet through the live program, changing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pyctl.cli.params import ENDPOINT
from pyctl.cli.root import CliConfig, cli
from pyctl.dataplane.explain import Explainer, Explanation
from pyctl.dataplane.frames import read_pcap, udp_frame
from pyctl.dataplane.loader import LoaderError
from steer_common import stun
from steer_common.endpoint import Endpoint

CANNED = {
    "dtls": bytes([22, 0xFE, 0xFD]) + bytes(10) + b"explain",
    "rtp": bytes([0x80, 0x6F, 0, 1]) + bytes(8) + b"explain",
    "rtcp": bytes([0x81, 200, 0, 6]) + bytes(24),
    # a Binding Success Response (what an ICE agent answers a check with)
    "success": bytes.fromhex("010100002112a442") + b"steerexplain",
}


def binding_request(ufrag: str) -> bytes:
    return stun.check(ufrag, "explain", b"steerexplain")


def describe(e: Explanation) -> str:
    lines = [f"side:    {e.side}", f"verdict: {e.action.name}", f"reason:  {e.reason.label}"]
    if e.before and e.after and (e.before.src, e.before.dst) != (e.after.src, e.after.dst):
        lines.append(
            f"rewrite: {e.before.src} -> {e.before.dst}  =>  {e.after.src} -> {e.after.dst}"
        )
    elif e.before:
        lines.append(f"packet:  {e.before.src} -> {e.before.dst} (addresses unchanged)")
    if e.after and e.before and e.after.dst_mac != e.before.dst_mac:
        lines.append(f"l2:      {e.after.src_mac} -> {e.after.dst_mac}")
    if not e.routed:
        lines.append("note:    the instance is not attached anywhere; routing was not evaluated")
    return "\n".join(lines)


@cli.command()
@click.option("--from", "src", type=ENDPOINT, help="Source IP:PORT of a described packet.")
@click.option("--to", "dst", type=ENDPOINT, help="Destination IP:PORT of a described packet.")
@click.option("--stun-ufrag", metavar="UFRAG", help="Payload: a Binding Request for this ufrag.")
@click.option("--payload", type=click.Choice(sorted(CANNED)), help="Payload: a canned shape.")
@click.option("--hex", "hex_frame", metavar="HEX", help="A whole Ethernet frame, in hex.")
@click.option(
    "--pcap",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Explain every frame of a pcap file (Ethernet).",
)
@click.option(
    "--side",
    type=click.Choice(["public", "internal"]),
    help="Interface the packet arrives on (default: inferred from the addresses).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def explain(
    cfg: CliConfig,
    src: Endpoint | None,
    dst: Endpoint | None,
    stun_ufrag: str | None,
    payload: str | None,
    hex_frame: str | None,
    pcap: Path | None,
    side: str | None,
    as_json: bool,
) -> None:
    """What would the relay do with this packet? Runs it through the instance's programs
    against the live maps (BPF_PROG_TEST_RUN) without changing any map or counter.

    \b
    steerctl explain --from 192.0.2.7:50000 --to 203.0.113.10:3478 --stun-ufrag U
    steerctl explain --from 10.88.0.11:40001 --to 192.0.2.7:50000 --payload rtp
    steerctl explain --pcap capture.pcap --json
    """
    described = src is not None or dst is not None
    if sum([described, hex_frame is not None, pcap is not None]) != 1:
        raise click.UsageError("give exactly one of --from/--to, --hex or --pcap")
    frames: list[bytes]
    if described:
        if src is None or dst is None:
            raise click.UsageError("--from and --to go together")
        if stun_ufrag and payload:
            raise click.UsageError("--stun-ufrag and --payload are exclusive")
        body = binding_request(stun_ufrag) if stun_ufrag else CANNED[payload or "rtp"]
        try:
            frames = [udp_frame(src, dst, body)]
        except ValueError as e:
            raise click.UsageError(str(e)) from None
    elif hex_frame is not None:
        try:
            frames = [bytes.fromhex(hex_frame.replace(":", "").replace(" ", ""))]
        except ValueError:
            raise click.BadParameter("not hex", param_hint="--hex") from None
    else:
        assert pcap is not None
        try:
            frames = read_pcap(pcap)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--pcap") from None
    if any(len(f) < 14 for f in frames):
        raise click.UsageError("a frame is shorter than an Ethernet header (14 bytes)")
    try:
        explainer = Explainer(cfg.instance)
    except LoaderError as e:
        raise click.ClickException(str(e)) from None
    try:
        results = [explainer.explain(f, side) for f in frames]
    finally:
        explainer.close()
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        click.echo("\n\n".join(describe(r) for r in results))
