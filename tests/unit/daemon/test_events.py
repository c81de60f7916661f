"""The event bus's history and docker's events filters (pure logic)."""

from __future__ import annotations

import pytest

from kanal.daemon.events import HISTORY, EventBus, EventFilter
from kanal.daemon.shapes import container_event
from kanal.errors import InvalidConfig


def net(action: str, name: str, ident: str = "n" * 64) -> dict[str, object]:
    return {
        "Type": "network",
        "Action": action,
        "Actor": {"ID": ident, "Attributes": {"name": name}},
    }


def test_history_replays_since_and_every_event_once() -> None:
    bus = EventBus()
    bus.publish(net("create", "a"))
    past, q = bus.subscribe_since(None)
    assert past == [] and q.empty()  # no since: live only
    bus.unsubscribe(q)
    first = bus.subscribe_since(0)[0][0]
    bus.publish(net("create", "b"))
    past, q = bus.subscribe_since(first["timeNano"] + 1)
    assert [e["Actor"]["Attributes"]["name"] for e in past] == ["b"]
    bus.publish(net("create", "c"))
    assert q.get_nowait()["Actor"]["Attributes"]["name"] == "c" and q.empty()
    for i in range(HISTORY + 5):
        bus.publish(net("create", str(i)))
    assert len(bus.subscribe_since(0)[0]) == HISTORY  # bounded


def test_filters_as_docker() -> None:
    ev_net = {**net("connect", "front", "abc123" + "0" * 58), "timeNano": 5_000_000_000}
    ev_ct = {
        **container_event("die", "def456" + "0" * 58, {"name": "web", "exitCode": "0"}),
        "timeNano": 6,
    }
    f = EventFilter.parse
    assert f({}).match(ev_net) and f({}).match(ev_ct)
    assert f({"type": ["network"]}).match(ev_net) and not f({"type": ["network"]}).match(ev_ct)
    assert f({"event": ["die", "start"]}).match(ev_ct)
    assert not f({"event": ["die"], "type": ["network"]}).match(ev_ct)  # keys AND'ed
    assert f({"network": ["front"]}).match(ev_net) and f({"network": ["abc"]}).match(ev_net)
    assert not f({"network": ["fro"]}).match(ev_net)  # a name matches whole, an id by prefix
    assert f({"container": ["web"]}).match(ev_ct) and not f({"container": ["web"]}).match(ev_net)
    assert f({"scope": ["local"]}).match({**ev_ct, "scope": "local"})
    assert f({}, since="5").match(ev_net) and not f({}, since="5.000000001").match(ev_net)
    assert f({}, until="5").match(ev_net) and not f({}, until="4.999999999").match(ev_net)


@pytest.mark.parametrize(
    ("filters", "since", "until"),
    [
        ({"image": ["x"]}, "", ""),
        ({}, "-1", ""),
        ({}, "", "1.1234567891"),
        ({}, "1e9", ""),
        ({}, "", "x"),
    ],
)
def test_bad_filters_and_times(filters: dict[str, list[str]], since: str, until: str) -> None:
    with pytest.raises(InvalidConfig):
        EventFilter.parse(filters, since, until)


def test_peer_changes_from_watch_batches() -> None:
    from kanal.cluster.nodes import Node
    from kanal.daemon.peerevents import changes, node_event
    from kanal.store import Entry
    from kanal.store.etcd import WatchBatch
    from kanal.store.etcdwatch import WatchEvent

    def put(name: str, addr: str) -> WatchEvent:
        return WatchEvent("put", f"nodes/{name}", Node(name, addr, 1.0, 1).to_json(), 5, 1, None)

    known = {"h1": "192.0.2.1"}
    got = changes(known, WatchBatch(5, [put("h2", "192.0.2.2"), put("h1", "192.0.2.1")]))
    assert got == [("join", "h2", "192.0.2.2")]  # h1 again (a re-put): nothing
    gone = WatchEvent("delete", "nodes/h2", b"", 6, 0, None)
    assert changes(known, WatchBatch(6, [gone, gone])) == [("leave", "h2", "192.0.2.2")]
    # a compacted watch: the listing replaces what was known
    listing = [Entry("nodes/h3", Node("h3", "192.0.2.3", 1.0, 1).to_json(), 7)]
    assert changes(known, WatchBatch(7, [], resync=listing)) == [
        ("leave", "h1", "192.0.2.1"),
        ("join", "h3", "192.0.2.3"),
    ]
    assert known == {"h3": "192.0.2.3"}
    ev = node_event("join", "h3", "192.0.2.3")
    assert EventFilter.parse({"type": ["node"], "event": ["join"]}).match(ev)
