"""The Python enum mirrors in steer_common/shared.py must match bpf/steer_shared.h exactly."""

from __future__ import annotations

import enum
import re

import pytest

from steer_common import shared

pytestmark = pytest.mark.unit


def c_enum(name: str) -> dict[str, int]:
    text = shared.SHARED_HEADER.read_text()
    body = re.search(rf"enum {name} \{{(.*?)\}};", text, re.S)
    assert body, f"enum {name} not found in {shared.SHARED_HEADER}"
    return {m[0]: int(m[1]) for m in re.findall(r"^\s*(\w+)\s*=\s*(\d+),", body[1], re.M)}


@pytest.mark.parametrize(
    ("c_name", "prefix", "py_enum"),
    [
        ("steer_reason", "STEER_R_", shared.Reason),
        ("steer_backend_state", "STEER_BACKEND_", shared.BackendState),
        ("steer_family", "STEER_FAMILY_", shared.Family),
        ("steer_learn_kind", "STEER_LEARN_", shared.LearnKind),
    ],
)
def test_enum_mirror(c_name: str, prefix: str, py_enum: type[enum.IntEnum]) -> None:
    c = {k.removeprefix(prefix): v for k, v in c_enum(c_name).items() if not k.endswith("_MAX")}
    assert c == {m.name: m.value for m in py_enum}


def test_reason_count_matches_map_size() -> None:
    assert c_enum("steer_reason")["STEER_R__MAX"] == shared.REASON_COUNT


def test_ufrag_limits() -> None:
    text = shared.SHARED_HEADER.read_text()
    assert f"#define STEER_UFRAG_MIN {shared.UFRAG_MIN}\n" in text
    assert f"#define STEER_UFRAG_MAX {shared.UFRAG_MAX}\n" in text


def test_fleet_flags() -> None:
    text = shared.SHARED_HEADER.read_text()
    assert f"#define STEER_SESSION_FOREIGN {shared.SESSION_FOREIGN}\n" in text
    assert f"#define STEER_FLOW_FLEET {shared.FLOW_FLEET}\n" in text
    assert f"#define STEER_RFLOW_STALE {shared.RFLOW_STALE}\n" in text
    assert f"#define STEER_SESSION_CID {shared.SESSION_CID}\n" in text
    assert f"#define STEER_FLOW_TENTATIVE {shared.FLOW_TENTATIVE}\n" in text


def test_config_flags() -> None:
    text = shared.SHARED_HEADER.read_text()
    assert f"#define STEER_CONFIG_NO_HINTS {shared.CONFIG_NO_HINTS}\n" in text
