"""The oldest aioice the transceiver may run on, checked at start-up.

transceiver/rebind.py moves a session's return path on the answer to a probe
(`ice.check`), and that is safe only because aioice's STUN transaction discards a
response whose MESSAGE-INTEGRITY does not verify under the key of the request (RFC 8489
section 9.1.4). aioice does so from 0.13.0 on; 0.12.1 and older resolve a transaction
with any response that carries its id, so a spoofed, unsigned Success Response from the
probed address would pass for the client's. pyproject.toml asks for the same floor; this
check stops a transceiver installed some other way (an older aioice pinned beside it).
"""

from __future__ import annotations

import inspect
import re
from importlib import metadata

from aioice import stun

AIOICE_FLOOR = "0.13.0"


def _release(version: str) -> tuple[int, ...] | None:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    return None if m is None else tuple(int(x or 0) for x in m.groups())


def check_aioice() -> None:
    """Raise RuntimeError naming the installed version and the floor if aioice is older
    than AIOICE_FLOOR (or its transactions take no integrity key)."""
    version = metadata.version("aioice")
    release, floor = _release(version), _release(AIOICE_FLOOR)
    assert floor is not None
    takes_key = "integrity_key" in inspect.signature(stun.Transaction).parameters
    if release is None or release < floor or not takes_key:
        raise RuntimeError(
            f"aioice {version} is installed; steer-transceiver needs aioice>={AIOICE_FLOOR}: "
            "older versions do not verify the MESSAGE-INTEGRITY of a STUN response, and "
            "the rebind repair trusts a probe's answer only because aioice does "
            "(pip install 'aioice>=" + AIOICE_FLOOR + "')"
        )
