"""The two SDP edits the relay design needs, done on text lines.

Offer: the client's candidates are kept (our checks towards them leave through the relay,
which NATs them to the VIP), but ``a=end-of-candidates`` and mDNS (``.local``) candidates
are removed. The client's checks reach us through the relay from an address it never
signalled, so aioice must learn the client as a peer-reflexive candidate; told that the
candidate list is complete, aioice would declare ICE failed as soon as the signalled pairs
fail, or at once when there are none. mDNS names cannot be resolved from a data centre.

Answer: every ``a=candidate`` becomes the VIP candidate(s), and ``m=``/``c=`` carry the
first VIP, so the transceiver's own socket never appears in signaling. With an ICE-TCP
port, each VIP also gets a TCP passive candidate (RFC 6544) on that port, priced below
every UDP one, so a client whose UDP works keeps using UDP; the relay's ICE-TCP component
(pyctl/tcp) carries that connection to this same session socket as UDP.
"""

from __future__ import annotations

from collections.abc import Sequence

from steer_common.endpoint import Endpoint

HOST_TYPE_PREFERENCE = 126  # RFC 8445 section 5.1.2.2, for host candidates


class OfferError(ValueError):
    """An offer we cannot answer; the message is meant for the client."""


def _lines(text: str) -> list[str]:
    return [line for line in text.replace("\r\n", "\n").split("\n") if line]


def _join(lines: Sequence[str]) -> str:
    return "\r\n".join(lines) + "\r\n"


def prepare_offer(text: str) -> str:
    """Check the offer's outline and drop what would mislead aioice (see module doc)."""
    lines = _lines(text)
    if not lines or lines[0] != "v=0":
        raise OfferError("offer is not SDP: it must start with v=0")
    if not any(line.startswith("m=") for line in lines):
        raise OfferError("offer has no media section (m= line)")
    if not any(line.startswith("a=ice-ufrag:") for line in lines):
        raise OfferError("offer has no a=ice-ufrag")
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise OfferError("offer has no a=fingerprint (DTLS is required)")
    kept = []
    for line in lines:
        if line == "a=end-of-candidates":
            continue
        if line.startswith("a=candidate:") and _candidate_host(line).endswith(".local"):
            continue
        kept.append(line)
    return _join(kept)


def _candidate_host(line: str) -> str:
    # a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
    fields = line.split()
    return fields[4] if len(fields) > 4 else ""


def candidate_priority(index: int) -> int:
    """Host priority (RFC 8445 5.1.2.1) with local preference falling by VIP order."""
    local_preference = 65535 - index
    return (HOST_TYPE_PREFERENCE << 24) | (local_preference << 8) | (256 - 1)


TCP_PASSIVE_PREFERENCE = 4  # RFC 6544 section 4.2: direction-pref of a passive candidate


def tcp_candidate_priority(index: int) -> int:
    """RFC 6544 4.2: local preference = 2^13 * direction-pref + other-pref; at most
    2^15 + 8191, below every UDP candidate's (65535 - index)."""
    local_preference = (TCP_PASSIVE_PREFERENCE << 13) + (8191 - index)
    return (HOST_TYPE_PREFERENCE << 24) | (local_preference << 8) | (256 - 1)


def vip_candidates(vips: Sequence[Endpoint], tcp_port: int | None = None) -> list[str]:
    """The VIPs as host candidates: UDP, then (with `tcp_port`) TCP passive on that port."""
    out = [
        f"a=candidate:vip{i} 1 udp {candidate_priority(i)} {vip.ip} {vip.port} typ host"
        for i, vip in enumerate(vips)
    ]
    if tcp_port is not None:
        out += [
            f"a=candidate:vipt{i} 1 tcp {tcp_candidate_priority(i)} {vip.ip} {tcp_port} "
            "typ host tcptype passive"
            for i, vip in enumerate(vips)
        ]
    return out


def _connection_line(vip: Endpoint) -> str:
    return f"c=IN IP{vip.ip.version} {vip.ip}"


def rewrite_answer(text: str, vips: Sequence[Endpoint], tcp_port: int | None = None) -> str:
    """Replace every candidate with the VIP candidates (`vip_candidates`), per media
    section, and point the ``m=`` port and ``c=`` lines at the first VIP."""
    if not vips:
        raise ValueError("at least one VIP is needed")
    first = vips[0]
    out: list[str] = []
    in_media = False
    placed = False  # VIP candidates written in the current media section
    ended = False  # a=end-of-candidates written in the current media section
    for line in _lines(text):
        if line.startswith("m="):
            _close_section(out, in_media, placed, ended)
            in_media, placed, ended = True, False, False
            fields = line.split(" ")
            if fields[1] != "0":  # port 0 rejects the section: leave it alone
                fields[1] = str(first.port)
            out.append(" ".join(fields))
        elif line.startswith("c="):
            out.append(_connection_line(first))
        elif line.startswith("a=candidate:"):
            if not placed:
                out.extend(vip_candidates(vips, tcp_port))
                placed = True
        elif line == "a=end-of-candidates":
            if in_media and not placed:
                out.extend(vip_candidates(vips, tcp_port))
                placed = True
            out.append(line)
            ended = True
        else:
            out.append(line)
    _close_section(out, in_media, placed, ended)
    return _join(out)


def _close_section(out: list[str], in_media: bool, placed: bool, ended: bool) -> None:
    # we gather before answering, so the candidate list is always complete
    if in_media and placed and not ended:
        out.append("a=end-of-candidates")


def answer_candidates(text: str) -> list[str]:
    """The ``a=candidate`` lines of an SDP, in order (for logs and tests)."""
    return [line for line in _lines(text) if line.startswith("a=candidate:")]


def answer_ufrags(text: str) -> set[str]:
    return {line.split(":", 1)[1] for line in _lines(text) if line.startswith("a=ice-ufrag:")}
