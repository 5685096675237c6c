"""Spoofed sources move nothing (steer.bpf.c, "Return-routability"; docs/architecture.md,
"Threat model"), live: the real kernel and XDP in namespaces, a real ICE agent (aioice)
where its answer is what the attack abuses, and only packets a host that forges its source
address can send (steer_testkit/live.py spoof()).

Each attack is one test, with the legitimate move it must not break beside it: a NAT
rebinding, a client moving to a new address, a client reusing a port for a new session.
The relay runs with the production budgets.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from aioice import Candidate, Connection, stun

from pyctl.dataplane import topology
from pyctl.dataplane.loader import BuildOptions
from pyctl.dataplane.maps import Session
from pyctl.dataplane.netns import netns
from pyctl.dataplane.sources import parse_nets, source_rules
from pyctl.lab.net import CLIENT4, CLIENT_NETS, RELAY_INT4, RELAY_PUB4
from steer_common import cid, seal
from steer_common.endpoint import Endpoint
from steer_common.shared import Reason
from steer_testkit import stun as stunb
from steer_testkit.live import (
    LiveRelay,
    exchange,
    live_relay,
    recv_or_none,
    spoof,
    spoof_many,
    udp_socket,
)
from transceiver import ice

pytestmark = pytest.mark.netns

PWD = b"sessionPassword000000000"
RTP = bytes([0x80, 0x6F, 0, 1]) + b"\0" * 8 + b"opus-frame"
NEW_IP = "198.51.100.9"  # a second address of the client's: a move to another network
LAB_RULES = source_rules(True, parse_nets(CLIENT_NETS))


@pytest.fixture(scope="module")
def spoof_relay() -> Iterator[LiveRelay]:
    tag = f"s{os.getpid() % 10000}"
    with live_relay(tag, "native", BuildOptions(instance=f"spoof-{tag}")) as relay:
        topology.add_addrs(relay.net.client, "eth0", [f"{NEW_IP}/24"])
        topology.run_in(relay.net.relay, ["ping", "-c1", "-W1", NEW_IP])
        yield relay


@pytest.fixture
def relay(spoof_relay: LiveRelay) -> Iterator[LiveRelay]:
    r = spoof_relay.reset()
    # the daemon's source rules, the lab's client space allowed as the lab does
    r.maps.replace_source_rules(LAB_RULES)
    yield r


def vip(relay: LiveRelay) -> Endpoint:
    return relay.net.vips[0]


def to(e: Endpoint) -> tuple[str, int]:
    return (str(e.ip), e.port)


def ep(text: str) -> Endpoint:
    return Endpoint.parse(text)


def flows_of(relay: LiveRelay, sock: Endpoint) -> list[Endpoint]:
    return sorted((f.client for f in relay.maps.flows() if f.sock == sock), key=str)


def path_of(relay: LiveRelay, sock: Endpoint) -> Endpoint | None:
    try:
        return Endpoint.from_c(relay.maps.path_map[sock.fill(relay.maps.path_map.Key())].client)
    except KeyError:
        return None


def check(ufrag: str, txid: bytes, pwd: bytes | None = PWD) -> bytes:
    return stunb.binding_request(f"{ufrag}:cli".encode(), integrity_key=pwd, txid=txid)


def delta(relay: LiveRelay, before: dict[Reason, int], r: Reason) -> int:
    return relay.counters()[r] - before[r]


@asynccontextmanager
async def agent(relay: LiveRelay, ufrag: str, i: int = 1) -> AsyncIterator[Connection]:
    """A session's real ICE agent (aioice, controlled) on a transceiver socket, registered
    with the relay: it answers every check that carries its password with a Binding
    Success Response, and checks each new address it hears from (triggered checks)."""
    conn = Connection(ice_controlling=False)
    ice.set_credentials(conn, ufrag, PWD.decode())
    with netns(relay.net.trx(i)):
        sock = await ice.gather_host(conn, relay.net.trx_ip4(i))
    relay.register(ufrag, sock, backend_id=i)
    conn.remote_username, conn.remote_password = "cli", "clientPassword0000000000"
    try:
        yield conn
    finally:
        await conn.close()


def agent_sock(conn: Connection) -> Endpoint:
    c = conn._local_candidates[0]
    return Endpoint.parse(f"{c.host}:{c.port}")


async def connect_client(relay: LiveRelay, conn: Connection) -> Connection:
    """A real client agent (controlling) in the client namespace, connected to `conn`
    through the VIP: its check, the session's answer and check, its answer (the proof)."""
    client = Connection(ice_controlling=True)
    with netns(relay.net.client):
        client._local_candidates_start = True
        client._local_candidates += await client.get_component_candidates(
            component=1, addresses=[CLIENT4]
        )
    client._local_candidates_end = True
    client._local_username, client._local_password = "cli", "clientPassword0000000000"
    client.remote_username, client.remote_password = conn.local_username, PWD.decode()
    v = vip(relay)
    host = Candidate("1", 1, "udp", 1, str(v.ip), v.port, "host")
    await client.add_remote_candidate(host)
    await client.add_remote_candidate(None)
    c = client._local_candidates[0]
    await conn.add_remote_candidate(Candidate("2", 1, "udp", 1, c.host, c.port, "host"))
    await conn.add_remote_candidate(None)
    await asyncio.wait_for(asyncio.gather(client.connect(), conn.connect()), 10)
    return client


def client_ep(client: Connection) -> Endpoint:
    c = client._local_candidates[0]
    return Endpoint.parse(f"{c.host}:{c.port}")


# -- 1. flow hijack: the attacker's own credentials from the victim's address


def test_spoofed_check_from_a_victims_address_takes_no_flow(relay: LiveRelay) -> None:
    victim_ep, v_ep = ep(f"{CLIENT4}:55001"), relay.trx_sock(2, 42001)
    victim, v = udp_socket(relay.net.client, victim_ep), udp_socket(relay.net.trx(2), v_ep)
    relay.register("victimUfrag00001", v_ep, backend_id=2)
    exchange(relay, "victimUfrag00001", v, victim, PWD)

    async def attack() -> list[bytes]:
        async with agent(relay, "attackerUfrag001"):
            for i in range(3):  # as often as it likes: each is answered Success
                spoof(relay, victim_ep, vip(relay), check("attackerUfrag001", b"hijack%06d" % i))
            await asyncio.sleep(0.3)
            victim.sendto(RTP, to(vip(relay)))  # the victim's media after the attack
            got = await asyncio.get_running_loop().run_in_executor(None, recv_or_none, v, 2.0)
            return [got[0]] if got else []

    before = relay.counters()
    got = asyncio.run(attack())
    assert got == [RTP], "the victim's media did not reach the victim's session"
    assert flows_of(relay, v_ep) == [victim_ep]
    assert delta(relay, before, Reason.FWD_STUN) == 3  # the checks did reach the attacker
    assert delta(relay, before, Reason.FWD_RETURN_NO_FLOW) >= 3  # its answers: budgeted
    assert delta(relay, before, Reason.FWD_RETURN_LEARNED) == 0
    for s in (victim, v):
        s.close()


# -- 2. media reflection: the attacker's own session's return path to a third party


def test_spoofed_check_from_a_third_party_moves_no_media(relay: LiveRelay) -> None:
    third_ep = ep(f"{CLIENT4}:55101")
    third = udp_socket(relay.net.client, third_ep)  # a host the attacker wants to flood

    async def attack() -> tuple[int, int, int]:
        async with agent(relay, "reflectUfrag0001") as a:
            client = await connect_client(relay, a)
            try:
                assert path_of(relay, agent_sock(a)) == client_ep(client)
                spoof(relay, third_ep, vip(relay), check("reflectUfrag0001", b"reflect00001"))
                await asyncio.sleep(0.5)
                got: list[bytes] = []
                for i in range(40):  # the session's media, as an echo app sends it
                    await a.send(RTP + b"%02d" % i)
                for _ in range(40):
                    data, _ = await asyncio.wait_for(client.recvfrom(), 2)
                    got.append(data)
                third.settimeout(0.5)
                at_third = []
                while (d := recv_or_none(third, 0.3)) is not None:
                    at_third.append(d[0])
                media = [d for d in at_third if d[:1] == b"\x80"]
                return len(got), len(media), len(at_third)
            finally:
                await client.close()

    before = relay.counters()
    to_client, media_at_third, stun_at_third = asyncio.run(attack())
    assert media_at_third == 0, f"{media_at_third} media packets went to the third party"
    assert to_client == 40, "the attacker's own client lost its media"
    # what the third party got: the agent's answer and its checks, from its own budget
    assert stun_at_third <= 1 + 7
    assert delta(relay, before, Reason.FWD_RETURN_MOVED) == 0
    third.close()


# -- 3. internal and bogus sources


@pytest.mark.parametrize(
    ("source", "rules", "why"),
    [
        ("10.88.0.11:40001", True, Reason.DROP_SRC_BOGON),  # a transceiver's (RFC 1918)
        ("203.0.113.10:5000", True, Reason.DROP_SRC_BOGON),  # the VIP
        ("127.0.0.1:5000", True, Reason.DROP_SRC_BOGON),
        ("0.0.0.0:5000", True, Reason.DROP_SRC_BOGON),
        ("224.0.0.5:5000", True, Reason.DROP_SRC_BOGON),
        ("192.168.1.10:5000", True, Reason.DROP_SRC_BOGON),  # RFC 1918: not on the internet
        ("100.64.1.1:5000", True, Reason.DROP_SRC_BOGON),  # shared (CGN) space
        (f"{RELAY_PUB4}:5000", True, Reason.DROP_SRC_INTERNAL),  # the relay's own address
        # with no source rules at all, the reverse path still knows the inside
        ("10.88.0.11:40001", False, Reason.DROP_SRC_INTERNAL),  # a transceiver's
        (f"{RELAY_INT4}:5000", False, Reason.DROP_SRC_INTERNAL),  # the relay's inside address
        ("203.0.113.10:5000", False, Reason.DROP_SRC_BOGON),  # the VIP (denied with it)
    ],
)
def test_checks_from_sources_no_client_can_have_are_dropped(
    relay: LiveRelay, source: str, rules: bool, why: Reason
) -> None:
    if not rules:
        relay.maps.replace_source_rules({})
    trx_ep = relay.trx_sock(1, 42101)
    trx = udp_socket(relay.net.trx(1), trx_ep)
    relay.register("bogonUfrag000001", trx_ep)
    before = relay.counters()
    spoof(relay, ep(source), vip(relay), check("bogonUfrag000001", b"bogon0000001"))
    spoof(relay, ep(source), vip(relay), RTP)  # and data with no flow, and an answer
    spoof(relay, ep(source), vip(relay), bytes(stunb.Message(msg_type=stunb.BINDING_SUCCESS)))
    legit = udp_socket(relay.net.client, ep(f"{CLIENT4}:55201"))
    legit.sendto(check("bogonUfrag000001", b"legit0000001"), to(vip(relay)))
    got = recv_or_none(trx, 2.0)
    assert got is not None and got[0][8:20] == b"legit0000001", "a legitimate check was lost"
    assert recv_or_none(trx, 0.2) is None, "a spoofed packet reached the session"
    assert delta(relay, before, why) == 3
    assert relay.maps.asked_map.items() and all(
        Endpoint.from_c(k.client) != ep(source) for k, _ in relay.maps.asked_map.items()
    )
    for s in (trx, legit):
        s.close()


# -- 4. a transceiver is not trusted for clients that never checked it


def test_a_success_no_client_asked_for_moves_nothing(relay: LiveRelay) -> None:
    victim_ep, v_ep, rogue_ep = (
        ep(f"{CLIENT4}:55301"),
        relay.trx_sock(2, 42301),
        relay.trx_sock(1, 42302),
    )
    victim, v = udp_socket(relay.net.client, victim_ep), udp_socket(relay.net.trx(2), v_ep)
    rogue = udp_socket(relay.net.trx(1), rogue_ep)
    relay.register("victimUfrag00004", v_ep, backend_id=2)
    relay.register("rogueUfrag000004", rogue_ep, backend_id=1)
    exchange(relay, "victimUfrag00004", v, victim, PWD)
    before = relay.counters()
    ok = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=b"rogue0000001")
    ok.attributes["XOR-MAPPED-ADDRESS"] = to(victim_ep)
    ok.add_message_integrity(PWD)
    rogue.sendto(bytes(ok), to(victim_ep))  # a compromised transceiver's claim
    assert recv_or_none(victim, 2.0) is not None  # it goes out, within the rogue's budget
    victim.sendto(RTP, to(vip(relay)))
    assert v.recvfrom(4096)[0] == RTP, "the victim's media left its session"
    assert recv_or_none(rogue, 0.3) is None
    assert flows_of(relay, v_ep) == [victim_ep] and flows_of(relay, rogue_ep) == []
    assert delta(relay, before, Reason.FWD_RETURN_UNASKED) == 1
    for s in (victim, v, rogue):
        s.close()


# -- 5. one client cannot load a session with checks, nor starve others' mobility


def test_a_flood_of_checks_is_held_to_the_sessions_budget(relay: LiveRelay) -> None:
    opts = relay.dp.opts
    n = 3 * opts.session_check_burst

    async def attack() -> tuple[int, int]:
        async with agent(relay, "floodUfrag000005") as a:
            evicted: list[tuple[str, int]] = []
            ice.cap_peer_reflexive(a, 8, evicted.append)
            a._early_checks_done = True  # as after connect(): checks make pairs
            v = vip(relay)
            flood = [  # its own credentials, a new source port each time
                (ep(f"{CLIENT4}:{20000 + i}"), v, check("floodUfrag000005", b"flood%07d" % i))
                for i in range(n)
            ]
            start = time.monotonic()
            spoof_many(relay, flood)
            took = time.monotonic() - start
            await asyncio.sleep(0.5)
            prflx = [c for c in a._remote_candidates if c.type == "prflx"]
            assert len(prflx) <= 8 and len(a._check_list) <= 8, "the agent kept every address"
            return int(opts.session_check_burst + opts.session_check_pps * took), len(evicted)

    before = relay.counters()
    allowed, evicted = asyncio.run(attack())
    passed = delta(relay, before, Reason.FWD_STUN)
    dropped = delta(relay, before, Reason.DROP_CHECK_BUDGET)
    assert passed + dropped == n
    assert 0 < passed <= allowed + 8 * (os.cpu_count() or 1), (passed, allowed)  # no lock
    assert evicted >= passed - 8


def test_a_flood_of_bad_checks_does_not_starve_anothers_rebinding(relay: LiveRelay) -> None:
    """Checks without valid MESSAGE-INTEGRITY to one session from many ports (each gets a
    401) spend that session's budgets; another session's client rebinds meanwhile and its
    proof (the session's check to the new port, the client's answer) gets through."""
    opts = relay.dp.opts
    b_ep, old_ep, new_ep = relay.trx_sock(2, 42501), ep(f"{CLIENT4}:55501"), ep(f"{CLIENT4}:55502")
    b = udp_socket(relay.net.trx(2), b_ep)
    old = udp_socket(relay.net.client, old_ep)
    relay.register("steadyUfrag00005", b_ep, backend_id=2)
    exchange(relay, "steadyUfrag00005", b, old, PWD)

    n = 2 * opts.noflow_burst  # more than the whole relay's no-flow burst, at once
    v = vip(relay)
    bad = b"bad-pwd"
    flood = [
        (ep(f"{CLIENT4}:{20000 + i}"), v, check("badUfrag00000005", b"bad0%08d" % i, bad))
        for i in range(n)
    ]

    async def attack() -> None:
        async with agent(relay, "badUfrag00000005"):
            spoof_many(relay, flood)
            await asyncio.sleep(0.5)

    asyncio.run(attack())
    old.close()
    new = udp_socket(relay.net.client, new_ep)  # the NAT rebound: the same client, a new port
    exchange(relay, "steadyUfrag00005", b, new, PWD)
    b.sendto(RTP, to(old_ep))  # the session still sends to the old port...
    assert new.recvfrom(4096)[0] == RTP  # ...and the relay sends it to the proven one
    assert path_of(relay, b_ep) == new_ep
    for s in (b, new):
        s.close()


# -- 6. connection-ID tokens do not outlive their session


def test_a_cid_of_an_ended_session_reaches_nobody(relay: LiveRelay) -> None:
    key = seal.new_key(3)
    seal.install_key(relay.dp.table("steer_seal_keys"), key)
    trx_ep = relay.trx_sock(1, 42601)
    relay.maps.set_backend(1, Endpoint(trx_ep.ip, 0), relay.maps.backend_state(1))
    trx = udp_socket(relay.net.trx(1), trx_ep)
    old = seal.seal_for(key, 1, trx_ep.port)
    relay.maps.add_session(Session(old, trx_ep, vip(relay), 1))
    nonce = seal.unseal(old)[0].nonce  # type: ignore[index]
    record = cid.record(cid.mint_for(key, 1, trx_ep.port, nonce=nonce))
    sender = udp_socket(relay.net.client, ep(f"{CLIENT4}:55601"))
    sender.sendto(record, to(vip(relay)))
    assert trx.recvfrom(4096)[0] == record  # the live session's CID routes
    relay.maps.del_session(old)  # the session ends; a new one gets the same port
    relay.maps.add_session(Session(seal.seal_for(key, 1, trx_ep.port), trx_ep, vip(relay), 1))
    before = relay.counters()
    sender.sendto(record, to(vip(relay)))
    assert recv_or_none(trx, 0.5) is None, "an ended session's CID reached the new session"
    assert delta(relay, before, Reason.DROP_DTLS_CID_DEAD) == 1
    for s in (trx, sender):
        s.close()


# -- the legitimate moves


@pytest.mark.parametrize("how", ["rebinding", "new_address"])
def test_a_client_that_moves_proves_its_new_address(relay: LiveRelay, how: str) -> None:
    s_ep, a_ep = relay.trx_sock(1, 42701), ep(f"{CLIENT4}:55701")
    b_ep = ep(f"{CLIENT4}:55702") if how == "rebinding" else ep(f"{NEW_IP}:55701")
    trx, a = udp_socket(relay.net.trx(1), s_ep), udp_socket(relay.net.client, a_ep)
    relay.register("moverUfrag000007", s_ep)
    exchange(relay, "moverUfrag000007", trx, a, PWD)
    b = udp_socket(relay.net.client, b_ep)
    before = relay.counters()
    exchange(relay, "moverUfrag000007", trx, b, PWD)
    assert path_of(relay, s_ep) == b_ep
    trx.sendto(RTP, to(a_ep))  # the transceiver keeps sending where it nominated
    assert b.recvfrom(4096)[0] == RTP
    assert recv_or_none(a, 0.2) is None
    assert delta(relay, before, Reason.FWD_STUN_PROVEN) == 1
    assert delta(relay, before, Reason.FWD_RETURN_MOVED) == 1
    for s in (trx, a, b):
        s.close()


def test_a_client_reuses_its_port_for_a_new_session(relay: LiveRelay) -> None:
    c_ep, s1_ep, s2_ep = ep(f"{CLIENT4}:55801"), relay.trx_sock(1, 42801), relay.trx_sock(2, 42802)
    c = udp_socket(relay.net.client, c_ep)
    s1, s2 = udp_socket(relay.net.trx(1), s1_ep), udp_socket(relay.net.trx(2), s2_ep)
    relay.register("firstUfrag000008", s1_ep, backend_id=1)
    exchange(relay, "firstUfrag000008", s1, c, PWD)
    relay.maps.del_session("firstUfrag000008")
    relay.register("secondUfrag00008", s2_ep, backend_id=2)
    exchange(relay, "secondUfrag00008", s2, c, PWD)
    c.sendto(RTP, to(vip(relay)))
    assert s2.recvfrom(4096)[0] == RTP
    assert flows_of(relay, s2_ep) == [c_ep]
    for s in (c, s1, s2):
        s.close()


def test_a_session_from_a_port_of_a_session_that_died_unpurged(relay: LiveRelay) -> None:
    """The first session's flow is still there (its purge lagged) but its session is gone:
    the second session's answer re-points it tentatively, its proof for good."""
    c_ep, s1_ep, s2_ep = ep(f"{CLIENT4}:55901"), relay.trx_sock(1, 42901), relay.trx_sock(2, 42902)
    c = udp_socket(relay.net.client, c_ep)
    s1, s2 = udp_socket(relay.net.trx(1), s1_ep), udp_socket(relay.net.trx(2), s2_ep)
    relay.register("firstUfrag000009", s1_ep, backend_id=1)
    exchange(relay, "firstUfrag000009", s1, c, PWD)
    relay.maps.drop_sessions(["firstUfrag000009"])  # unregistered, flows not purged yet
    relay.register("secondUfrag00009", s2_ep, backend_id=2)
    before = relay.counters()
    exchange(relay, "secondUfrag00009", s2, c, PWD)
    assert delta(relay, before, Reason.FWD_RETURN_LEARNED) == 1
    assert flows_of(relay, s2_ep) == [c_ep]
    for s in (c, s1, s2):
        s.close()
