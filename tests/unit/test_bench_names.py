"""A result's name says what was measured: the API-at-scale latency is called the 1 M-flow
result only when the maps held 1 M flows (a smoke run's 100 k writes `api_latency_ms`)."""

from __future__ import annotations

import pytest

from bench import config

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("flows", "key"),
    [
        (100_000, "api_latency_ms"),
        (999_999, "api_latency_ms"),
        (1_000_000, "api_latency_1m_flows_ms"),
        (1_002_500, "api_latency_1m_flows_ms"),
    ],
)
def test_the_key_names_the_size(flows: int, key: str) -> None:
    assert config.latency_key(flows) == key
