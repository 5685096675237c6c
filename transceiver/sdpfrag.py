"""SDP fragments (`application/trickle-ice-sdpfrag`, RFC 8840 section 9) as WHIP PATCH
carries them (RFC 9725 section 4.3): read the client's, write ours.

A fragment whose ice-ufrag/ice-pwd differ from the session's current remote ones asks for
an ICE restart; one that repeats them only trickles candidates, which this transceiver
does not take (it answers 422, as RFC 9725 section 4.3.1 says for the half it does not
support: every candidate it needs arrives in the offer, or as a peer-reflexive address).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aioice import Candidate

from steer_common.endpoint import Endpoint
from steer_common.shared import ICE_CHARS
from transceiver.sdp import vip_candidates

CONTENT_TYPE = "application/trickle-ice-sdpfrag"
MAX_BYTES = 32 * 1024  # as an offer (transceiver/guard.py)
UFRAG_LEN = (4, 256)  # RFC 8839 section 5.4
PWD_LEN = (22, 256)


class FragError(ValueError):
    """A fragment we cannot use; the message is meant for the client."""


@dataclass(frozen=True)
class Frag:
    ufrag: str | None
    pwd: str | None
    media: str | None  # the first m= line, echoed in the answer
    mid: str | None
    candidates: tuple[str, ...]  # whole "a=candidate:..." lines
    end_of_candidates: bool


def _ice_string(name: str, value: str, bounds: tuple[int, int]) -> str:
    low, high = bounds
    if not low <= len(value) <= high or not set(value) <= ICE_CHARS:
        raise FragError(f"a={name} must be {low}-{high} ICE characters (RFC 8839), got {value!r}")
    return value


def parse(body: bytes) -> Frag:
    """The fragment in a PATCH body; FragError says what is wrong with it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FragError("the fragment is not UTF-8 text") from None
    values: dict[str, str] = {}
    media = mid = None
    candidates: list[str] = []
    end = False
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise FragError(f"not an SDP line: {line[:60]!r}")
        if line.startswith("m="):
            if media is not None:
                break  # max-bundle: only the first m= section carries ICE (RFC 9725 4.3.2)
            media = line
        elif line.startswith("a=mid:"):
            mid = mid or line[6:]
        elif line.startswith(("a=ice-ufrag:", "a=ice-pwd:")):
            name, value = line[2:].split(":", 1)
            if values.setdefault(name, value) != value:
                raise FragError(f"two different a={name} lines")
        elif line.startswith("a=candidate:"):
            try:
                Candidate.from_sdp(line[2:].removeprefix("candidate:"))
            except (ValueError, IndexError) as exc:
                raise FragError(f"bad candidate {line[:80]!r}: {exc}") from None
            candidates.append(line)
        elif line == "a=end-of-candidates":
            end = True
    ufrag, pwd = values.get("ice-ufrag"), values.get("ice-pwd")
    if (ufrag is None) != (pwd is None):
        raise FragError("a=ice-ufrag and a=ice-pwd go together")
    if ufrag is not None and pwd is not None:
        ufrag = _ice_string("ice-ufrag", ufrag, UFRAG_LEN)
        pwd = _ice_string("ice-pwd", pwd, PWD_LEN)
    return Frag(ufrag, pwd, media, mid, tuple(candidates), end)


def answer(
    frag: Frag, ufrag: str, pwd: str, advertised: Sequence[Endpoint], tcp_port: int | None = None
) -> str:
    """Our side of a restart: new credentials and the candidates (the VIPs), complete."""
    lines = []
    if frag.media is not None:
        lines.append(frag.media)
    if frag.mid is not None:
        lines.append(f"a=mid:{frag.mid}")
    lines += [f"a=ice-ufrag:{ufrag}", f"a=ice-pwd:{pwd}"]
    lines += vip_candidates(advertised, tcp_port)
    lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"
