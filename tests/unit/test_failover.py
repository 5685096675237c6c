"""Which relay carries a call before one is killed (pyctl/lab/failover.py): a client's ICE
checks from each of its candidates may hash to different relays, so a session has flows
with packets on several; it counts once, on the relay where its client packets grew the
most while carried() looked. A session of an earlier call whose client is gone carries
nothing, however many packets its flow once had."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pyctl.lab.failover import busiest, carried


class _Lab:
    """Relays whose flows grow by `rate` client packets per read of the API."""

    def __init__(self, flows: dict[str, list[dict[str, Any]] | None]) -> None:
        self.flows = flows
        self.reads = 0

    def relay_list(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(name=n) for n in self.flows]

    def relay_named(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(name=name)

    def api(self, relay: SimpleNamespace) -> SimpleNamespace:
        def flows() -> list[dict[str, Any]]:
            got = self.flows[relay.name]
            if got is None:
                raise ConnectionRefusedError(relay.name)
            self.reads += 1
            return [{**f, "packets": f["packets"] + f["rate"] * self.reads} for f in got]

        return SimpleNamespace(flows=flows)


def _f(ufrag: str, rate: int, packets: int = 0, client: str = "192.0.2.7:5000") -> dict[str, Any]:
    return {"ufrag": ufrag, "packets": packets, "rate": rate, "client": client, "vip": "VIP:3478"}


def test_a_session_on_two_relays_counts_once_where_its_media_went() -> None:
    # the CI failure: 'c' checked through relay2 (3 packets) and carried media via relay3
    lab: Any = _Lab(
        {
            "relay1": None,  # dead: carries nothing, not listed
            "relay2": [_f("a", 900), _f("b", 850), _f("c", 3)],
            "relay3": [_f("c", 880), _f("d", 910), _f("", 50), _f("e", 0)],
        }
    )
    got = carried(lab, interval=0)
    assert got == {"relay2": ["a", "b"], "relay3": ["c", "d"]}
    assert sum(map(len, got.values())) == 4  # one relay per session: rows match the counts
    assert busiest(lab, {"relay2": ["a"], "relay3": ["c", "d"]}).name == "relay3"


def test_an_earlier_calls_session_is_not_carried() -> None:
    # the second CI failure: a session of an earlier test, its client gone, still had a
    # flow with packets on relay2 (5 sessions listed for 4 calls)
    lab: Any = _Lab(
        {
            "relay2": [_f("a", 25), _f("old", 0, packets=5000, client="192.0.2.7:6000")],
            "relay3": [_f("b", 25), _f("c", 25, client="192.0.2.7:7000")],
        }
    )
    assert carried(lab, interval=0) == {"relay2": ["a"], "relay3": ["b", "c"]}
    assert busiest(lab).name == "relay3"


def test_a_drain_then_a_kill_act_on_different_relays_and_measure_each_window(
    monkeypatch: Any,
) -> None:
    """run_failover's bookkeeping: the kill skips the drained relay (it may still show
    client packets while the route converges), each row gets each window's gaps under its
    prefix, and the data channel's stall is the longest time without an echo."""
    from pyctl.lab import failover

    clock = iter([100.0, 104.0, 108.0])  # the three windows' starts
    monkeypatch.setattr(
        failover, "time", SimpleNamespace(monotonic=lambda: next(clock), sleep=lambda s: None)
    )
    lab: Any = _Lab({"relay1": [_f("a", 9), _f("b", 9)], "relay2": [_f("c", 9)], "relay3": []})
    acted: list[str] = []

    def act(what: str) -> Any:
        def do(name: str) -> dict[str, Any]:
            acted.append(f"{what} {name}")
            return {"relay": name}

        return do

    lab.drain_relay, lab.kill_relay = act("drain"), act("kill")
    every = [round(99 + 0.1 * i, 1) for i in range(131)]
    hole = [t for t in every if not 108.25 < t < 109.05]  # c: no echo from 108.2 to 109.1

    def run_event(lab: Any, sessions: int, event: Any, **kw: Any) -> list[dict[str, Any]]:
        assert kw["count"] == 3
        for _ in range(3):
            event()
        return [
            {
                "ufrag": u,
                "ok": True,
                "messages_sent": 131,
                "messages_echoed": 131,
                "gaps_up_ms": [20.0, 30.0, 250.0],
                "gaps_down_ms": [21.0, 31.0, 251.0],
                "timeline": [[t - 0.05, t] for t in (hole if u == "c" else every)],
            }
            for u in "abc"
        ]

    monkeypatch.setattr(failover, "run_event", run_event)
    rows, windows = failover.run_failover(lab, 3, ("drain", "kill"), progress=lambda s: None)
    assert acted == ["drain relay1", "kill relay2"]
    assert [w["action"] for w in windows] == ["control", "drain", "kill"]
    a, _, c = rows
    assert (a["drain_relay"], c["drain_relay"], c["relay"], a["relay"]) == (
        "relay1",
        "relay2",
        "relay2",
        None,  # the drained relay is not the kill's candidate
    )
    assert (c["control_gap_up_ms"], c["drain_gap_up_ms"], c["gap_up_ms"]) == (20.0, 30.0, 250.0)
    assert c["dc_stall_ms"] == 900.0 and a["dc_stall_ms"] == 100.0
    assert c["control_dc_stall_ms"] == c["drain_dc_stall_ms"] == 100.0
    assert "timeline" not in c and c["unechoed"] == 0
