"""Pure logic of the cluster layer: blocks, the gone-host tracker, records, desired entries."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading

import pytest

from kanal.cluster.gipam import PoolConfig, block_id, block_of, block_order, blocks_of
from kanal.cluster.nodes import GoneTracker, Node
from kanal.cluster.vxlan import (
    EndpointRecord,
    desired_entries,
    device_name,
    diff,
    endpoint_key,
    overlay_mtu,
)
from kanal.errors import DecodeError, InvalidConfig
from kanal.netlink.vxlan import FLOOD_MAC, FdbEntry, NeighEntry, RouteEntry
from kanal.store.etcd import _WatchStream
from kanal.store.etcdconn import Connector


def test_blocks_cover_the_subnet_without_overlap() -> None:
    net = ipaddress.ip_network("10.60.0.0/22")
    blocks = blocks_of(net, 26)
    assert len(blocks) == 16 and blocks[0] == ipaddress.ip_network("10.60.0.0/26")
    assert sum(b.num_addresses for b in blocks) == net.num_addresses
    assert block_id(blocks[1]) == "10.60.0.64-26"
    assert block_of(ipaddress.ip_address("10.60.1.70"), net, 26) == ipaddress.ip_network(
        "10.60.1.64/26"
    )
    with pytest.raises(InvalidConfig):
        block_of(ipaddress.ip_address("10.61.0.1"), net, 26)
    with pytest.raises(InvalidConfig):
        PoolConfig("10.60.0.0/24", block_prefix=20).network()
    with pytest.raises(InvalidConfig):
        PoolConfig("not-a-subnet").network()


def test_block_order_is_per_host_and_stable() -> None:
    blocks = blocks_of(ipaddress.ip_network("10.60.0.0/20"), 26)
    a1, a2, b = block_order(blocks, "h1"), block_order(blocks, "h1"), block_order(blocks, "h2")
    assert a1 == a2 and sorted(a1) == sorted(blocks)
    assert a1[0] != b[0] or a1 != b  # racing hosts start apart


def test_gone_tracker_needs_grace_and_two_observations() -> None:
    t = GoneTracker(grace=10)
    assert t.observe({"h1"}, {"h1", "h2"}, now=100) == set()  # first sight of h2 absent
    assert t.observe({"h1"}, {"h1", "h2"}, now=105) == set()
    assert t.observe({"h1"}, {"h1", "h2"}, now=110) == {"h2"}
    # it came back: the clock starts over
    assert t.observe({"h1", "h2"}, {"h1", "h2"}, now=111) == set()
    assert t.observe({"h1"}, {"h2"}, now=112) == set()
    assert t.observe({"h1"}, {"h2"}, now=121) == set()
    assert t.observe({"h1"}, {"h2"}, now=122) == {"h2"}
    t.forget("h2")
    assert t.observe({"h1"}, {"h2"}, now=123) == set()
    zero = GoneTracker(grace=0)
    assert zero.observe(set(), {"h3"}, now=1) == set()  # never on a single observation
    assert zero.observe(set(), {"h3"}, now=2) == {"h3"}


def test_records_round_trip_and_reject_garbage() -> None:
    n = Node("h1", "192.0.2.1", 1.5, 42, "02:00:00:00:00:01")
    assert Node.from_json(n.to_json()) == n
    r = EndpointRecord("10.60.0.5", "02:42:0A:3C:00:05", "h1", "192.0.2.1")
    back = EndpointRecord.from_json(r.to_json())
    assert back.mac == "02:42:0a:3c:00:05" and back.ip == r.ip
    named = EndpointRecord("10.60.0.6", "02:42:00:00:00:06", "h2", "192.0.2.2", "web", ("www",))
    assert EndpointRecord.from_json(named.to_json()) == named
    for bad in (b"{", b"[]", json.dumps({"ip": "x"}).encode()):
        with pytest.raises(DecodeError):
            EndpointRecord.from_json(bad)
        with pytest.raises(DecodeError):
            Node.from_json(bad)
    assert endpoint_key("net1", "ep1") == "overlay/net1/endpoints/ep1"
    assert device_name(4242) == "kvx4242" and overlay_mtu(1500) == 1450
    with pytest.raises(InvalidConfig):
        device_name(1 << 24)


def _eps() -> list[EndpointRecord]:
    return [
        EndpointRecord("10.60.0.2", "02:42:00:00:00:02", "h1", "192.0.2.1"),
        EndpointRecord("10.60.0.66", "02:42:00:00:00:42", "h2", "192.0.2.2"),
        EndpointRecord("10.60.0.67", "02:42:00:00:00:43", "h2", "192.0.2.2"),
        EndpointRecord("10.60.0.130", "02:42:00:00:00:82", "h3", "192.0.2.3"),
    ]


def test_desired_entries_skip_self_and_dead_hosts() -> None:
    want = desired_entries(_eps(), {"h1": "192.0.2.1", "h2": "192.0.2.22"}, "h1")
    # h1's own endpoint is local; h3 is not registered (dead): nothing for either.
    assert want.fdb == {
        FdbEntry("02:42:00:00:00:42", "192.0.2.22"),  # the node's address wins
        FdbEntry("02:42:00:00:00:43", "192.0.2.22"),
        FdbEntry(FLOOD_MAC, "192.0.2.22"),
    }
    assert want.neigh == {
        NeighEntry("10.60.0.66", "02:42:00:00:00:42"),
        NeighEntry("10.60.0.67", "02:42:00:00:00:43"),
    }
    assert want.routes == frozenset()
    routed = desired_entries(_eps(), {"h2": "192.0.2.2"}, "h1", host_routes=True)
    assert routed.routes == {RouteEntry("10.60.0.66/32", ""), RouteEntry("10.60.0.67/32", "")}


def test_diff_adds_removes_and_replaces() -> None:
    want = desired_entries(_eps(), {"h2": "192.0.2.2", "h3": "192.0.2.3"}, "h1")
    have_fdb = [
        FdbEntry("02:42:00:00:00:42", "192.0.2.2"),
        FdbEntry("02:42:00:00:00:99", "192.0.2.9"),
    ]
    have_neigh = [
        NeighEntry("10.60.0.66", "02:42:00:00:00:42"),
        NeighEntry("10.60.0.67", "02:42:00:00:00:ff"),  # stale MAC: replaced, not deleted
        NeighEntry("10.60.0.200", "02:42:00:00:00:c8"),
    ]
    ch = diff(want, have_fdb, have_neigh, [RouteEntry("10.60.9.0/24", "")])
    assert FdbEntry("02:42:00:00:00:99", "192.0.2.9") in ch.del_fdb and len(ch.del_fdb) == 1
    assert set(ch.add_fdb) == want.fdb - set(have_fdb)
    assert set(ch.set_neigh) == {
        NeighEntry("10.60.0.67", "02:42:00:00:00:43"),
        NeighEntry("10.60.0.130", "02:42:00:00:00:82"),
    }
    assert ch.del_neigh == [NeighEntry("10.60.0.200", "02:42:00:00:00:c8")]
    assert ch.del_routes == [RouteEntry("10.60.9.0/24", "")] and ch
    same = diff(want, want.fdb, want.neigh, want.routes)
    assert not same


def _chunk(b: bytes) -> bytes:
    return f"{len(b):x}\r\n".encode() + b + b"\r\n"


def test_watch_stream_reassembles_split_chunks() -> None:
    """The hand-made chunked reader over a real socket pair, fed in awkward pieces."""
    a, b = socket.socketpair()
    s = _WatchStream(Connector(), ("x", 0), 1.0)
    s.sock = a
    a.settimeout(1.0)
    msgs = [{"result": {"created": True}}, {"result": {"events": [{"kv": {"key": "YQ=="}}]}}]
    wire = b"".join(_chunk(json.dumps(m).encode() + b"\n") for m in msgs)
    wire += _chunk(b'{"result":') + _chunk(b' {"header": {}}}\n')
    stop = threading.Event()
    got = []

    def feed() -> None:
        for i in range(0, len(wire), 7):
            b.sendall(wire[i : i + 7])
        b.sendall(b"0\r\n\r\n")

    th = threading.Thread(target=feed)
    th.start()
    with pytest.raises(ConnectionResetError):
        for m in s.messages(stop):
            if m is not None:
                got.append(m)
    th.join()
    a.close()
    b.close()
    assert got == [*msgs, {"result": {"header": {}}}]


def test_block_candidates_never_list_a_huge_pool() -> None:
    import itertools

    from kanal.cluster.gipam import block_candidates

    v6 = ipaddress.ip_network("fd00:99::/64")
    first = list(itertools.islice(block_candidates(v6, 122, "h1"), 100))
    again = list(itertools.islice(block_candidates(v6, 122, "h1"), 100))
    other = list(itertools.islice(block_candidates(v6, 122, "h2"), 100))
    assert first == again and first != other  # per host, reproducible, apart
    assert len(set(first)) == 100
    assert all(b.prefixlen == 122 and b.subnet_of(v6) for b in first)  # type: ignore[arg-type]
    small = ipaddress.ip_network("10.60.0.0/24")
    assert sorted(block_candidates(small, 26, "h1")) == blocks_of(small, 26)
