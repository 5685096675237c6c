"""The Controller and the control API through aiohttp's test client, on MemoryRoutes (no
root, no kernel); the same suite runs once more on real pinned maps (the contract test:
MemoryRoutes behaves as the maps do), when run as root."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pyctl.daemon.control import ControlError, Controller
from pyctl.daemon.routes import Routes
from steer_common.endpoint import Endpoint
from steer_testkit.controller import TRX1, TRX2, VIP, Call, learn, run, session


def test_register_then_read_back(routes: Routes) -> None:
    async def scenario(call: Call, ctl: Controller) -> None:
        status, body = await call("POST", "/v1/sessions", session("unit0001", f"{TRX1}:40000"))
        assert status == 201 and body["session"]["vip"] == str(VIP)
        s = routes.get_session("unit0001")
        assert s is not None and (str(s.sock), s.backend_id) == (f"{TRX1}:40000", 1)
        assert routes.sock_owner(Endpoint.parse(f"{TRX1}:40000")) == s
        status, body = await call("GET", "/v1/sessions/unit0001")
        assert status == 200 and body["session"]["ufrag"] == "unit0001"
        status, body = await call("GET", "/v1/backends")
        assert [(b["id"], b["sessions"]) for b in body["backends"]] == [(1, 1), (2, 0)]

    run(routes, scenario)


BAD = [
    ({"sock": f"{TRX1}:1", "backend": 1}, 400, "ufrag"),
    (session("no!chars", f"{TRX1}:1"), 400, "ufrag"),
    (session("abc", f"{TRX1}:1"), 400, "ufrag"),
    (session("unit0002", "10.88.0.11"), 400, "sock"),
    (session("unit0002", f"{TRX1}:1", backend=0), 400, "backend"),
    (session("unit0002", f"{TRX1}:1", backend=4096), 400, "backend"),
    (session("unit0002", f"{TRX1}:1", ttl=-1), 400, "ttl"),
    (session("unit0002", f"{TRX1}:1", color="red"), 400, "color"),
    (session("unit0002", f"{TRX1}:1", backend=7), 404, "backend"),
    (session("unit0002", f"{TRX2}:1", backend=1), 422, "sock"),
    ([1, 2], 400, "body"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD)
def test_a_bad_registration_is_refused_and_changes_nothing(
    routes: Routes, body: Any, status: int, field: str
) -> None:
    async def scenario(call: Call, ctl: Controller) -> None:
        got, ans = await call("POST", "/v1/sessions", body)
        assert (got, ans["field"]) == (status, field), ans
        assert routes.sessions() == [] and ctl.store.records() == []

    run(routes, scenario)


def test_a_live_ufrag_or_socket_is_a_conflict(routes: Routes) -> None:
    async def scenario(call: Call, ctl: Controller) -> None:
        assert (await call("POST", "/v1/sessions", session("unit0003", f"{TRX1}:1")))[0] == 201
        status, ans = await call("POST", "/v1/sessions", session("unit0003", f"{TRX1}:2"))
        assert (status, ans["field"]) == (409, "ufrag")
        status, ans = await call("POST", "/v1/sessions", session("unit0004", f"{TRX1}:1"))
        assert (status, ans["field"]) == (409, "sock")
        assert [s.ufrag for s in routes.sessions()] == ["unit0003"]

    run(routes, scenario)


def test_delete_removes_its_flows_only(routes: Routes) -> None:
    async def scenario(call: Call, ctl: Controller) -> None:
        await call("POST", "/v1/sessions", session("unit0005", f"{TRX1}:5"))
        await call("POST", "/v1/sessions", session("unit0006", f"{TRX2}:6", backend=2))
        learn(routes, "198.51.100.2:1001", f"{TRX1}:5", 1)
        learn(routes, "198.51.100.2:1002", f"{TRX1}:5", 1)
        learn(routes, "198.51.100.3:1003", f"{TRX2}:6", 2)
        status, ans = await call("GET", "/v1/flows?ufrag=unit0005")
        assert status == 200 and sorted(f["client"] for f in ans["flows"]) == [
            "198.51.100.2:1001",
            "198.51.100.2:1002",
        ]
        status, ans = await call("DELETE", "/v1/sessions/unit0005")
        assert status == 200 and ans["flows_removed"] == 2
        assert [str(f.client) for f, _ in routes.iter_flows()] == ["198.51.100.3:1003"]
        assert (await call("GET", "/v1/sessions/unit0005"))[0] == 404

    run(routes, scenario)


def test_flows_come_in_pages(routes: Routes) -> None:
    async def scenario(call: Call, ctl: Controller) -> None:
        await call("POST", "/v1/sessions", session("unit0007", f"{TRX1}:7"))
        clients = [f"198.51.100.9:{2000 + i}" for i in range(5)]
        for c in clients:
            learn(routes, c, f"{TRX1}:7", 1)
        got, after = [], ""
        for _ in range(10):
            status, ans = await call("GET", f"/v1/flows?limit=2{after}")
            assert status == 200 and len(ans["flows"]) <= 2
            got += [f["client"] for f in ans["flows"]]
            if "next" not in ans:
                break
            after = f"&after={ans['next']}"
        assert sorted(got) == clients
        assert (await call("GET", "/v1/flows?limit=0"))[0] == 400

    run(routes, scenario)


def test_deleting_a_backend_ends_its_sessions_and_flows(routes: Routes) -> None:
    async def scenario(call: Call, ctl: Controller) -> None:
        for i in range(3):
            await call("POST", "/v1/sessions", session(f"unitb{i:03d}", f"{TRX1}:{10 + i}"))
            learn(routes, f"198.51.100.4:{3000 + i}", f"{TRX1}:{10 + i}", 1)
        await call("POST", "/v1/sessions", session("unitkeep", f"{TRX2}:20", backend=2))
        learn(routes, "198.51.100.5:4000", f"{TRX2}:20", 2)
        status, ans = await call("DELETE", "/v1/backends/1")
        assert status == 200 and ans["sessions_removed"] == 3
        assert [s.ufrag for s in routes.sessions()] == ["unitkeep"]
        assert [str(f.client) for f, _ in routes.iter_flows()] == ["198.51.100.5:4000"]
        assert ctl.events["deleted"] == 3

    run(routes, scenario)


def test_a_draining_backend_takes_no_new_sessions(routes: Routes) -> None:
    async def scenario(call: Call, ctl: Controller) -> None:
        assert (await call("PUT", "/v1/backends/1", {"state": "draining"}))[0] == 200
        status, ans = await call("POST", "/v1/sessions", session("unit0009", f"{TRX1}:9"))
        assert (status, ans["field"]) == (409, "backend")
        assert (await call("PUT", "/v1/backends/1", {"state": "sideways"}))[0] == 400
        assert (await call("PUT", "/v1/backends/1", {"state": "active"}))[0] == 200
        assert (await call("POST", "/v1/sessions", session("unit0009", f"{TRX1}:9")))[0] == 201

    run(routes, scenario)


def test_expiry_ends_only_what_is_due(routes: Routes) -> None:
    async def scenario(call: Call, ctl: Controller) -> None:
        await call("POST", "/v1/sessions", session("unitexp1", f"{TRX1}:30", ttl=5))
        await call("POST", "/v1/sessions", session("unitexp2", f"{TRX1}:31", ttl=50))
        learn(routes, "198.51.100.6:5000", f"{TRX1}:30", 1)
        gone = ctl.expire_sessions(now=time.time() + 10)
        assert gone == {Endpoint.parse(f"{TRX1}:30")}
        assert routes.purge_socks(gone) == 1
        assert [s.ufrag for s in routes.sessions()] == ["unitexp2"]
        assert ctl.expire_sessions(now=time.time() + 10) == set()

    run(routes, scenario)


def test_another_backend_cannot_take_over_a_foreign_session(routes: Routes) -> None:
    """A session installed from a dead relay (foreign, no record here): a backend token of
    another backend gets 403 before anything claims or adopts it; its own backend's claim
    goes through."""
    from pyctl.dataplane.maps import Session

    claims: list[str] = []
    sock = f"{TRX1}:41900"

    class Fleet:  # takes every foreign session over (control.Fleet)
        def on_change(self, put: Any, gone: Any) -> None: ...
        def refusal(self) -> None: ...
        def claim(self, live: Session, take_over: bool) -> Session:
            claims.append(live.ufrag)
            return live

    async def scenario(call: Call, ctl: Controller) -> None:
        ctl.fleet = Fleet()
        routes.add_session(Session("foreign01", Endpoint.parse(sock), VIP, 1, foreign=True))
        with pytest.raises(ControlError) as e:
            ctl.session("foreign01", owner=2)  # heartbeat, end and restart all ask this
        assert e.value.status == 403
        assert claims == [] and ctl.store.get("foreign01") is None
        assert ctl.session("foreign01", owner=1).backend == 1
        assert claims == ["foreign01"]

    run(routes, scenario)
