"""ICE restart in the control API: `POST /v1/sessions/{ufrag}/restart` gives a live session a
new ufrag on the same socket without purging its flows; the old ufrag keeps routing for a
grace period, then goes. Run on MemoryRoutes and once more on real pinned maps (root), as
tests/unit/test_controller.py does (the `routes` fixture, tests/unit/conftest.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pyctl.daemon.control import Controller
from pyctl.daemon.routes import Routes
from steer_common.endpoint import Endpoint
from steer_testkit.controller import TRX1, TRX2, Call, learn, run, session

# `routes`, the fixture (tests/unit/conftest.py): memory, then real maps (root)

SOCK = f"{TRX1}:41000"


def flows_of(routes: Routes) -> list[str]:
    return sorted(str(f.client) for f, _ in routes.iter_flows())


async def restart(call: Call, old: str, body: Any) -> tuple[int, Any]:
    return await call("POST", f"/v1/sessions/{old}/restart", body)


def test_restart_adds_the_new_ufrag_on_the_same_socket_and_keeps_flows(routes: Routes) -> None:
    async def scenario(call: Call, ctl: Controller) -> None:
        assert (await call("POST", "/v1/sessions", session("rstold01", SOCK, ttl=30)))[0] == 201
        learn(routes, "198.51.100.7:6000", SOCK, 1)
        status, ans = await restart(call, "rstold01", {"ufrag": "rstnew01", "grace": 5})
        assert status == 201, ans
        assert ans["session"]["ufrag"] == "rstnew01" and ans["session"]["sock"] == SOCK
        assert ans["replaced"] == {"ufrag": "rstold01", "retires_in": 5.0}
        new, old = routes.get_session("rstnew01"), routes.get_session("rstold01")
        assert new is not None and str(new.sock) == SOCK and new.backend_id == 1
        assert old is not None and old.sock == new.sock  # routes during the grace period
        owner = routes.sock_owner(Endpoint.parse(SOCK))
        assert owner is not None and owner.ufrag == "rstnew01"
        assert flows_of(routes) == ["198.51.100.7:6000"]  # nothing purged
        # the records follow the new ufrag: heartbeats and reads use it
        assert [r.ufrag for r in ctl.store.records()] == ["rstnew01"]
        assert (await call("POST", "/v1/sessions/rstnew01/heartbeat", {}))[0] == 200
        status, ans = await call("GET", "/v1/sessions/rstold01")
        assert status == 404 and "replaced by 'rstnew01'" in ans["error"]

        # before the grace period ends nothing retires; after it, the old ufrag is gone
        assert ctl.expire_sessions(now=time.time() + 2) == set()
        assert routes.get_session("rstold01") is not None
        assert ctl.expire_sessions(now=time.time() + 6) == set()  # no socket to purge
        assert routes.get_session("rstold01") is None
        assert routes.get_session("rstnew01") == new
        owner = routes.sock_owner(Endpoint.parse(SOCK))
        assert owner is not None and owner.ufrag == "rstnew01"
        assert flows_of(routes) == ["198.51.100.7:6000"]
        assert ctl.events["restarted"] == 1 and ctl.events["retired"] == 1

    run(routes, scenario)


def test_ending_the_session_during_the_grace_ends_both_ufrags_and_its_flows(
    routes: Routes,
) -> None:
    async def scenario(call: Call, ctl: Controller) -> None:
        await call("POST", "/v1/sessions", session("rstold02", SOCK))
        await call("POST", "/v1/sessions", session("rstkeep2", f"{TRX2}:42000", backend=2))
        learn(routes, "198.51.100.8:6001", SOCK, 1)
        learn(routes, "198.51.100.9:6002", f"{TRX2}:42000", 2)
        assert (await restart(call, "rstold02", {"ufrag": "rstmid02"}))[0] == 201
        assert (await restart(call, "rstmid02", {"ufrag": "rstnew02"}))[0] == 201
        # the old ufrag and the session's socket cannot be ended through an old ufrag
        status, ans = await call("DELETE", "/v1/sessions/rstold02")
        assert status == 404 and "replaced by" in ans["error"]
        assert flows_of(routes) == ["198.51.100.8:6001", "198.51.100.9:6002"]
        status, ans = await call("DELETE", "/v1/sessions/rstnew02")
        assert status == 200 and ans["flows_removed"] == 1
        assert [s.ufrag for s in routes.sessions()] == ["rstkeep2"]
        assert routes.sock_owner(Endpoint.parse(SOCK)) is None
        assert flows_of(routes) == ["198.51.100.9:6002"]
        assert ctl.expire_sessions(now=time.time() + 60) == set()  # no alias left behind

    run(routes, scenario)


BAD = [
    ("rstold03", {}, 400, "ufrag"),
    ("rstold03", {"ufrag": "no!chars"}, 400, "ufrag"),
    ("rstold03", {"ufrag": "rstnew03", "grace": 0}, 400, "grace"),
    ("rstold03", {"ufrag": "rstnew03", "grace": 3600}, 400, "grace"),
    ("rstold03", {"ufrag": "rstnew03", "color": 1}, 400, "color"),
    ("rstold03", [1], 400, "body"),
    ("rstnone3", {"ufrag": "rstnew03"}, 404, "ufrag"),
    ("rstold03", {"ufrag": "rstold03"}, 409, "ufrag"),
    ("rstold03", {"ufrag": "rstother"}, 409, "ufrag"),
]


@pytest.mark.parametrize(("old", "body", "status", "field"), BAD)
def test_a_bad_restart_is_refused_and_changes_nothing(
    routes: Routes, old: str, body: Any, status: int, field: str
) -> None:
    async def scenario(call: Call, ctl: Controller) -> None:
        await call("POST", "/v1/sessions", session("rstold03", SOCK))
        await call("POST", "/v1/sessions", session("rstother", f"{TRX1}:41001"))
        learn(routes, "198.51.100.10:6003", SOCK, 1)
        before = (routes.sessions(), ctl.store.sessions())
        got, ans = await restart(call, old, body)
        assert (got, ans.get("field")) == (status, field), ans
        assert (routes.sessions(), ctl.store.sessions()) == before
        owner = routes.sock_owner(Endpoint.parse(SOCK))
        assert owner is not None and owner.ufrag == "rstold03"
        assert flows_of(routes) == ["198.51.100.10:6003"]
        assert "restarted" not in ctl.events

    run(routes, scenario)


def test_a_daemon_restart_during_the_grace_keeps_the_old_ufrag_an_alias(routes: Routes) -> None:
    """The aliases live in the daemon's memory; one that starts again finds the old ufrag
    in the maps on a socket another ufrag owns, and retires it, never the socket."""

    async def scenario(call: Call, ctl: Controller) -> None:
        await call("POST", "/v1/sessions", session("rstold04", SOCK))
        learn(routes, "198.51.100.11:6004", SOCK, 1)
        assert (await restart(call, "rstold04", {"ufrag": "rstnew04"}))[0] == 201
        again = Controller(routes, ctl.store, ctl.vips)
        again.reconcile()
        assert [r.ufrag for r in again.store.records()] == ["rstnew04"]
        assert again.expire_sessions(now=time.time() + 60) == set()  # adopted: 120 s
        assert [s.ufrag for s in routes.sessions()] == ["rstnew04"]
        owner = routes.sock_owner(Endpoint.parse(SOCK))
        assert owner is not None and owner.ufrag == "rstnew04"
        assert flows_of(routes) == ["198.51.100.11:6004"]

    run(routes, scenario)


def test_chained_restarts_are_bounded(routes: Routes) -> None:
    """A backend chaining restarts: at most MAX_PER_SESSION old ufrags live per session (the
    oldest retire at once, never the socket), and past RESTARTS_PER_MIN in a minute the
    next is 429 and changes nothing; another session restarts meanwhile."""
    from pyctl.daemon import aliases

    other = f"{TRX1}:41009"

    async def scenario(call: Call, ctl: Controller) -> None:
        await call("POST", "/v1/sessions", session("chain000", SOCK, ttl=60))
        await call("POST", "/v1/sessions", session("quiet000", other, ttl=60))
        learn(routes, "198.51.100.12:6005", SOCK, 1)
        live = "chain000"
        for i in range(1, aliases.RESTARTS_PER_MIN + 1):
            nxt = f"chain{i:03d}"
            status, ans = await restart(call, live, {"ufrag": nxt, "grace": 30})
            assert status == 201, (i, ans)
            live = nxt
            mine = [s.ufrag for s in routes.sessions() if str(s.sock) == SOCK]
            assert len(mine) <= 1 + aliases.MAX_PER_SESSION, mine
        mine = sorted(s.ufrag for s in routes.sessions() if str(s.sock) == SOCK)
        n = aliases.RESTARTS_PER_MIN
        assert mine == [f"chain{i:03d}" for i in range(n - aliases.MAX_PER_SESSION, n + 1)]
        before = routes.sessions()
        status, ans = await restart(call, live, {"ufrag": "chainmore", "grace": 30})
        assert status == 429 and "try again" in ans["error"], ans
        assert routes.sessions() == before
        assert ctl.events["restart_refused"] == 1
        assert ctl.events["retired"] == n - aliases.MAX_PER_SESSION
        owner = routes.sock_owner(Endpoint.parse(SOCK))
        assert owner is not None and owner.ufrag == live
        assert flows_of(routes) == ["198.51.100.12:6005"]
        assert (await restart(call, "quiet000", {"ufrag": "quiet001", "grace": 30}))[0] == 201
        # expiry retires only what is due, from the heap
        assert len(ctl.aliases) == aliases.MAX_PER_SESSION + 1
        assert ctl.expire_sessions(now=time.time() + 31) == set()
        assert len(ctl.aliases) == 0
        assert sorted(s.ufrag for s in routes.sessions()) == [live, "quiet001"]

    run(routes, scenario)
