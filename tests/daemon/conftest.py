"""Fixtures for the control-plane tests: one lab and one daemon (steer_testkit.daemon)
shared by the API, CLI and metrics tests, and a clean-up after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pyctl.lab.net import LabNet
from steer_testkit.daemon import (
    IDLE_TIMEOUT,
    TAG,
    TOKEN,
    Daemon,
    Env,
    cleanup,
    free_port,
    make_lab,
    open_maps,
    quote,
)


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One lab and one daemon shared by the API, CLI and metrics tests (each test cleans
    up after itself through the `clean` fixture)."""
    instance = f"dt{TAG}"
    net: LabNet | None = None
    daemons: list[Daemon] = []
    cleanup(None, instance, [])
    try:
        net = make_lab(f"d{TAG}")
        tcp_port = free_port()
        token_file = tmp_path_factory.mktemp("token") / "operator.token"
        token_file.write_text(TOKEN + "\n")
        d = Daemon(
            net,
            instance,
            tmp_path_factory.mktemp("daemon") / "daemon.log",
            extra=[
                "--idle-timeout",
                str(IDLE_TIMEOUT),
                "--api-listen",
                f"127.0.0.1:{tcp_port}",
                "--token-file",
                str(token_file),
            ],
            metrics_port=free_port(),
            token=TOKEN,
        )
        daemons.append(d)
        d.start()
        with open_maps(instance) as maps:
            yield Env(net, d, maps, tcp_port)
    finally:
        cleanup(net, instance, daemons)


@pytest.fixture
def clean(env: Env) -> Iterator[Env]:
    """The shared daemon, emptied of sessions and backends after the test."""
    yield env
    _, body = env.http.call("GET", "/v1/sessions")
    for s in body["sessions"]:
        env.http.call("DELETE", f"/v1/sessions/{quote(s['ufrag'])}")
    _, body = env.http.call("GET", "/v1/backends")
    for b in body["backends"]:
        env.http.call("DELETE", f"/v1/backends/{b['id']}")
    assert env.maps.sessions() == [] and env.maps.flows() == []
