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
