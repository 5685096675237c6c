"""The STUN builder the tests use lives in steer_common/stun.py (explain and the benchmarks
build their checks with it too)."""

from steer_common.stun import (
    BINDING_ERROR,
    BINDING_INDICATION,
    BINDING_REQUEST,
    BINDING_SUCCESS,
    ERROR_CODE,
    FINGERPRINT,
    ICE_CONTROLLING,
    MAGIC_COOKIE,
    MESSAGE_INTEGRITY,
    PRIORITY,
    USE_CANDIDATE,
    USERNAME,
    Message,
    attr,
    binding_request,
)

__all__ = [
    "BINDING_ERROR",
    "BINDING_INDICATION",
    "BINDING_REQUEST",
    "BINDING_SUCCESS",
    "ERROR_CODE",
    "FINGERPRINT",
    "ICE_CONTROLLING",
    "MAGIC_COOKIE",
    "MESSAGE_INTEGRITY",
    "PRIORITY",
    "USERNAME",
    "USE_CANDIDATE",
    "Message",
    "attr",
    "binding_request",
]
