"""Pure logic of the engine's IPAM and port reservations, on the memory store."""

from __future__ import annotations

import ipaddress
import threading

import pytest

from kanal.engine.ipam import (
    DEFAULT_POOLS,
    AddressAllocator,
    Pool,
    choose_subnet,
    validate_ipam_config,
)
from kanal.engine.model import IPAMConfig, Network, PortBinding
from kanal.engine.ports import PortAllocator, parse_publish
from kanal.errors import Conflict, InvalidConfig
from kanal.store.memory import MemoryStore


def net(*cfgs: IPAMConfig, v6: bool = False) -> Network:
    return Network(
        id="ab" * 32,
        name="n",
        driver="bridge",
        ipam=[validate_ipam_config(c) for c in cfgs],
        enable_ipv6=v6,
    )


def test_default_pools_are_dockers_and_skip_what_is_taken() -> None:
    assert str(choose_subnet(DEFAULT_POOLS, [])) == "172.17.0.0/16"
    taken = [ipaddress.ip_network("172.17.0.0/16"), ipaddress.ip_network("172.18.5.0/24")]
    assert str(choose_subnet(DEFAULT_POOLS, taken)) == "172.19.0.0/16"
    pools = [Pool("10.0.0.0/23", 24)]
    assert str(choose_subnet(pools, [ipaddress.ip_network("10.0.0.0/24")])) == "10.0.1.0/24"
    with pytest.raises(Conflict, match="non-overlapping IPv4 address pool"):
        choose_subnet(pools, [ipaddress.ip_network("10.0.0.0/16")])


@pytest.mark.parametrize(
    ("cfg", "msg"),
    [
        (IPAMConfig("10.1.0.5/24"), "should be 10.1.0.0/24"),
        (IPAMConfig("10.1.0.0/24", gateway="10.2.0.1"), "gateway"),
        (IPAMConfig("10.1.0.0/24", ip_range="10.1.1.0/25"), "range"),
        (IPAMConfig("10.1.0.0/24", aux_addresses={"r": "10.3.0.1"}), "aux-address"),
        (IPAMConfig("bogus"), "invalid subnet"),
        (IPAMConfig("10.1.0.0/31"), "too small"),
    ],
)
def test_bad_ipam_configs(cfg: IPAMConfig, msg: str) -> None:
    with pytest.raises(InvalidConfig, match=msg):
        validate_ipam_config(cfg)


def test_allocation_skips_reserved_round_robins_and_releases_once() -> None:
    n = net(IPAMConfig("10.1.0.0/29", aux_addresses={"rtr": "10.1.0.2"}))
    assert n.ipam[0].gateway == "10.1.0.1"
    alloc = AddressAllocator(MemoryStore())
    got = [str(alloc.allocate(n, 4, f"ep{i}")[0]) for i in range(4)]
    assert got == ["10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]  # not .0 .1 .2 .7
    with pytest.raises(Conflict, match="no available"):
        alloc.allocate(n, 4, "ep9")
    assert alloc.release(n.id, "10.1.0.4", "ep1") is True
    assert alloc.release(n.id, "10.1.0.4", "ep1") is False  # exactly once
    assert alloc.release(n.id, "10.1.0.5", "someone-else") is False
    assert str(alloc.allocate(n, 4, "ep10")[0]) == "10.1.0.4"
    with pytest.raises(Conflict, match="in use"):
        alloc.allocate(n, 4, "ep11", "10.1.0.3")
    with pytest.raises(InvalidConfig, match="reserved"):
        alloc.allocate(n, 4, "ep11", "10.1.0.2")
    # a second allocator on the same store (another daemon) sees the same owners
    other = AddressAllocator(alloc.store)
    assert other.in_use(n.id)["10.1.0.3"] == "ep0"
    with pytest.raises(Conflict):
        other.allocate(n, 4, "x")


def test_ip_range_and_v6() -> None:
    n = net(
        IPAMConfig("10.1.0.0/24", ip_range="10.1.0.128/30"),
        IPAMConfig("fd00:1::/64"),
        v6=True,
    )
    alloc = AddressAllocator(MemoryStore())
    assert str(alloc.allocate(n, 4, "a")[0]) == "10.1.0.128"
    a6, sub6, gw6 = alloc.allocate(n, 6, "a")
    assert str(a6) == "fd00:1::2" and str(sub6) == "fd00:1::/64" and str(gw6) == "fd00:1::1"
    # a static address outside the range but inside the subnet is allowed
    assert str(alloc.allocate(n, 4, "b", "10.1.0.9")[0]) == "10.1.0.9"


def test_parallel_allocations_never_collide() -> None:
    n = net(IPAMConfig("10.2.0.0/22"))
    store = MemoryStore()
    allocators = [AddressAllocator(store) for _ in range(4)]  # as four daemons
    got: list[str] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        for k in range(100):
            a = str(allocators[i].allocate(n, 4, f"ep{i}-{k}")[0])
            with lock:
                got.append(a)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(got) == 400 and len(set(got)) == 400


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("80", [PortBinding(80, "tcp", "", 0)]),
        ("8080:80", [PortBinding(80, "tcp", "", 8080)]),
        ("127.0.0.1:8080:80/udp", [PortBinding(80, "udp", "127.0.0.1", 8080)]),
        ("127.0.0.1::80", [PortBinding(80, "tcp", "127.0.0.1", 0)]),
        ("[::1]:8080:80", [PortBinding(80, "tcp", "::1", 8080)]),
        (
            "8000-8001:80-81/sctp",
            [PortBinding(80, "sctp", "", 8000), PortBinding(81, "sctp", "", 8001)],
        ),
    ],
)
def test_parse_publish(spec: str, want: list[PortBinding]) -> None:
    assert parse_publish(spec) == want


@pytest.mark.parametrize(
    "spec", ["", "x", "8080:80/icmp", "8000-8002:80-81", "70000:80", "1.2.3:80:80"]
)
def test_parse_publish_refuses(spec: str) -> None:
    with pytest.raises(InvalidConfig):
        parse_publish(spec)


def test_port_reservations() -> None:
    ports = PortAllocator(MemoryStore())
    ports.reserve("a", [PortBinding(80, "tcp", "", 8080)])
    with pytest.raises(Conflict, match="already allocated"):
        ports.reserve("b", [PortBinding(80, "tcp", "127.0.0.1", 8080)])  # any-address holds it
    ports.reserve("b", [PortBinding(80, "udp", "", 8080)])  # other protocol: fine
    ports.reserve("c", [PortBinding(80, "tcp", "127.0.0.1", 9090)])
    ports.reserve("d", [PortBinding(80, "tcp", "127.0.0.2", 9090)])
    with pytest.raises(Conflict):
        ports.reserve("e", [PortBinding(80, "tcp", "", 9090)])
    # all or nothing: the free one of a failing request is not kept
    with pytest.raises(Conflict):
        ports.reserve("f", [PortBinding(81, "tcp", "", 7070), PortBinding(80, "tcp", "", 8080)])
    ports.reserve("g", [PortBinding(81, "tcp", "", 7070)])
    (r,) = ports.reserve("h", parse_publish("127.0.0.1:6000-6001:80"))
    assert r.host_port in (6000, 6001)
    (r2,) = ports.reserve("i", parse_publish("127.0.0.1:6000-6001:80"))
    assert {r.host_port, r2.host_port} == {6000, 6001}
    with pytest.raises(Conflict, match="no free host port"):
        ports.reserve("j", parse_publish("127.0.0.1:6000-6001:80"))
    ports.release("a", [PortBinding(80, "tcp", "", 8080)])
    ports.release("a", [PortBinding(80, "tcp", "", 8080)])
    ports.reserve("k", [PortBinding(80, "tcp", "127.0.0.1", 8080)])
