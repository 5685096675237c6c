"""Python mirrors of the enums and constants in bpf/steer_shared.h.

Structs are never mirrored: Python uses the ctypes bcc generates from the C. Enums are
mirrored because Python needs their names without compiling anything; a unit test parses
the header and fails when the two disagree.
"""

from __future__ import annotations

import enum
from pathlib import Path

BPF_DIR = Path(__file__).resolve().parent.parent / "bpf"
SHARED_HEADER = BPF_DIR / "steer_shared.h"

UFRAG_MIN = 4
UFRAG_MAX = 32
# RFC 8839 ice-char: what a ufrag may be made of
ICE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/")
# backend ids the control plane hands out: steer_backends has STEER_MAX_BACKENDS (4096)
# slots, id 0 is never used, and a ufrag carries an id in three hex digits
BACKEND_ID_MIN = 1
BACKEND_ID_MAX = 4095
# flag bits the daemon sets (bpf/steer_shared.h): a session installed from another relay,
# a flow copied from another relay
SESSION_FOREIGN = 1
FLOW_FLEET = 1
# steer_session.flags: registered with a sealed ufrag; cid_nonce holds its nonce
SESSION_CID = 2
# steer_flow.flags: tentative (the session answered the address's check; the address has
# not yet proven it receives there)
FLOW_TENTATIVE = 2
# steer_rflow.flags: the client has since proven another address
RFLOW_STALE = 1
# steer_config.flags (STEER_CONFIG_*): connection hints off (what bench/mobility.py compares)
CONFIG_NO_HINTS = 1


class Family(enum.IntEnum):
    NONE = 0
    V4 = 4
    V6 = 6


class BackendState(enum.IntEnum):
    UNSET = 0
    ACTIVE = 1
    DRAINING = 2
    DOWN = 3


class LearnKind(enum.IntEnum):
    """steer_learn_event.kind: how a proof made a flow current (steer_learned)."""

    NEW = 1
    REPOINTED = 2
    PROVEN = 3


class Reason(enum.IntEnum):
    UNUSED_0 = 0
    PASS_NOT_IP = 1
    PASS_MALFORMED = 2
    PASS_FRAGMENT = 3
    PASS_NOT_STEERED = 4
    FWD_FLOW = 5
    FWD_STUN = 6
    FWD_RETURN = 7
    DROP_STUN_UNKNOWN_UFRAG = 8
    DROP_STUN_MALFORMED = 9
    DROP_STUN_NOT_REQUEST = 10
    DROP_DTLS_NO_FLOW = 11
    DROP_RTP_NO_FLOW = 12
    DROP_UNCLASSIFIED = 13
    DROP_BACKEND_DOWN = 14
    DROP_FAMILY_MISMATCH = 15
    PASS_FIB_FAILED = 16
    DROP_CROSS_UNNATED = 17
    FWD_STUN_ANSWER = 18
    DROP_CROSS_FRAGMENT = 19
    DROP_CROSS_ICMP = 20
    DROP_CROSS_OTHER = 21
    DROP_TTL_EXCEEDED = 22
    DROP_IP_OPTIONS = 23
    DROP_NO_FLOW_BUDGET = 24
    FWD_RETURN_LEARNED = 25
    FWD_RETURN_EVICTED = 26
    FWD_RETURN_NO_FLOW = 27
    FWD_RETURN_MOVED = 28
    FWD_STUN_SEALED = 29
    DROP_SEAL_BAD_MAC = 30
    DROP_SEAL_STALE_KEY = 31
    DROP_SEAL_NO_BACKEND = 32
    FWD_RTP_HINT = 33
    FWD_DTLS_CID = 34
    DROP_DTLS_CID_MALFORMED = 35
    DROP_DTLS_CID_FORGED = 36
    FWD_STUN_PROVEN = 37
    DROP_SRC_BOGON = 38
    DROP_SRC_INTERNAL = 39
    DROP_CHECK_BUDGET = 40
    DROP_SESSION_BUDGET = 41
    DROP_DTLS_CID_DEAD = 42
    FWD_RETURN_UNASKED = 43
    FWD_STUN_PROVEN_EVICTED = 44
    DROP_SEAL_PORT = 45

    @property
    def label(self) -> str:
        """The metrics/CLI spelling: lower case, e.g. ``fwd_flow``."""
        return self.name.lower()


REASON_COUNT = len(Reason)


class XdpAction(enum.IntEnum):
    ABORTED = 0
    DROP = 1
    PASS = 2
    TX = 3
    REDIRECT = 4
