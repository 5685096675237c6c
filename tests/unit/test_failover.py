"""Which relay carries a call before one is killed (pyctl/lab/failover.py): a client's ICE
checks from each of its candidates may hash to different relays, so a session has flows
with packets on several; it counts once, on the relay whose flow carried the most."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pyctl.lab.failover import busiest, carried


class _Lab:
    def __init__(self, flows: dict[str, list[dict[str, Any]] | None]) -> None:
        self.flows = flows

    def relay_list(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(name=n) for n in self.flows]

    def relay_named(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(name=name)

    def api(self, relay: SimpleNamespace) -> SimpleNamespace:
        def flows() -> list[dict[str, Any]]:
            got = self.flows[relay.name]
            if got is None:
                raise ConnectionRefusedError(relay.name)
            return got

        return SimpleNamespace(flows=flows)


def _f(ufrag: str, packets: int) -> dict[str, Any]:
    return {"ufrag": ufrag, "packets": packets}


def test_a_session_on_two_relays_counts_once_where_its_media_went() -> None:
    # the CI failure: 'c' checked through relay2 (3 packets) and carried media via relay3
    lab: Any = _Lab(
        {
            "relay1": None,  # dead: carries nothing, not listed
            "relay2": [_f("a", 900), _f("b", 850), _f("c", 3)],
            "relay3": [_f("c", 880), _f("d", 910), _f("", 50), _f("e", 0)],
        }
    )
    got = carried(lab)
    assert got == {"relay2": ["a", "b"], "relay3": ["c", "d"]}
    assert sum(map(len, got.values())) == 4  # one relay per session: rows match the counts
    assert busiest(lab, {"relay2": ["a"], "relay3": ["c", "d"]}).name == "relay3"
