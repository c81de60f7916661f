"""The store contract against a real etcd (single member on loopback, started here)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from kanal.errors import Unavailable
from kanal.store import Store, StoreConflict, open_store
from kanal.store.etcd import EtcdStore
from tests.helpers import etcd_server, free_port, unique
from tests.unit.store.test_store import (  # noqa: F401 (collected here against etcd)
    test_bad_keys_and_urls,
    test_compare_and_swap,
    test_concurrent_cas_increments_lose_nothing,
    test_put_get_list_delete,
    test_txn_is_all_or_nothing,
)

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed")


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with etcd_server(str(tmp_path_factory.mktemp("etcd"))) as ep:
        yield ep


@pytest.fixture
def store(etcd: str) -> Iterator[Store]:
    s = open_store(f"etcd://{etcd}/{unique('t', 20)}")  # each test in its own prefix
    yield s
    s.close()


def test_failover_and_unreachable(etcd: str, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    s = open_store(f"etcd://{dead},{etcd}/{unique('f', 20)}")
    assert isinstance(s, EtcdStore)
    s.put("a", b"1", expect=0)
    e = s.get("a")
    assert e is not None and e.value == b"1"
    with pytest.raises(StoreConflict):
        s.put("a", b"2", expect=0)
    only_dead = open_store(f"etcd://{dead}/x")
    with pytest.raises(Unavailable):
        only_dead.get("a")


def test_prefixes_are_separate(etcd: str) -> None:
    a = open_store(f"etcd://{etcd}/{unique('pa', 20)}")
    b = open_store(f"etcd://{etcd}/{unique('pb', 20)}")
    a.put("networks/x", b"A")
    assert b.get("networks/x") is None and b.list("") == []
    assert [e.key for e in a.list("networks/")] == ["networks/x"]


def _ranges(s: EtcdStore) -> int:
    return int(s.request_stats.get("/v3/kv/range", [0])[0])


def test_threads_share_kept_alive_connections(etcd: str) -> None:
    """kanald answers each API request on a thread of its own: their requests reuse
    the idle connections (no handshake per request), a probe too."""
    import threading

    s = open_store(f"etcd://{etcd}/{unique('pc', 20)}")
    assert isinstance(s, EtcdStore)
    s.put("k", b"v")
    (conn,) = s._idle[0]
    port = conn.sock.getsockname()[1]
    seen: list[int] = []

    def one() -> None:
        assert s.get("k") is not None
        seen.append(s._idle[0][0].sock.getsockname()[1])

    for _ in range(5):
        t = threading.Thread(target=one)
        t.start()
        t.join()
    s.probe(0)
    assert seen == [port] * 5
    assert [c.sock.getsockname()[1] for c in s._idle[0]] == [port]
    # Concurrent requests open more connections; at most POOL_IDLE are kept.
    from kanal.store.etcdwire import POOL_IDLE

    threads = [threading.Thread(target=lambda: [s.get("k") for _ in range(5)]) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= len(s._idle[0]) <= POOL_IDLE
    s.close()
    assert s._idle == {}
    assert s.get("k") is not None  # a new connection after close


def test_one_api_request_lists_the_cluster_networks_once(etcd: str) -> None:
    from kanal.engine.cluster import Cluster
    from kanal.engine.model import Network

    prefix = unique("nl", 20)
    cl = Cluster(f"etcd://{etcd}/{prefix}", "n1", "192.0.2.1")
    other = open_store(f"etcd://{etcd}/{prefix}")
    cl.add_network(Network(id="a" * 64, name="one", driver="overlay", scope="global"))
    before = _ranges(cl.store)
    cl.networks()
    cl.networks()
    assert _ranges(cl.store) == before + 2  # no scope: every call reads
    with cl.one_listing():
        first = cl.networks()
        first[0].labels["changed"] = "by a caller"
        again = cl.networks()
        assert _ranges(cl.store) == before + 3
        assert again[0].labels == {}  # each call gets its own objects
        # Another host's new network is not seen within the request...
        b = Network(id="b" * 64, name="two", driver="overlay", scope="global")
        other.put(f"networks/{b.id}", b.to_json())
        assert [n.name for n in cl.networks()] == ["one"]
        with cl.one_listing():  # nested: the same listing
            assert [n.name for n in cl.networks()] == ["one"]
        # ...but what the request writes itself is.
        cl.add_network(Network(id="c" * 64, name="three", driver="overlay", scope="global"))
        assert sorted(n.name for n in cl.networks()) == ["one", "three", "two"]
    assert sorted(n.name for n in cl.networks()) == ["one", "three", "two"]
    cl.store.close()
    other.close()


def test_the_leader_is_found_among_the_endpoints(etcd: str) -> None:
    """Watches go to the leader (EtcdClient.leader_index): here the one live member,
    second in the list, behind an endpoint where nothing listens."""
    s = open_store(f"etcd://{etcd}/{unique('ld', 20)}")
    assert isinstance(s, EtcdStore) and s.leader_index() == 0
    dead = f"127.0.0.1:{free_port()}"
    two = open_store(f"etcd://{dead},{etcd}/{unique('ld', 20)}")
    assert isinstance(two, EtcdStore) and two.leader_index() == 1
    only_dead = open_store(f"etcd://{dead}/x")
    assert isinstance(only_dead, EtcdStore) and only_dead.leader_index() is None
    for c in (s, two, only_dead):
        c.close()


def test_an_idle_watch_probes_its_member_without_holding_events_back(etcd: str) -> None:
    """Every host's watch goes quiet after the same last event and then asks its member
    whether it is still there; on a slow underlay the answer takes seconds. An event
    that arrives meanwhile is delivered at once, not after the answer; a failed
    answer makes the watch start again, missing nothing."""
    import threading
    import time

    s = open_store(f"etcd://{etcd}/{unique('pw', 20)}")
    assert isinstance(s, EtcdStore)
    probing, release = threading.Event(), threading.Event()
    answers: list[str] = ["slow", "fail"]
    real_probe = s.probe

    def slow_probe(i: int) -> None:
        what = answers.pop(0) if answers else "ok"
        if what == "slow":
            probing.set()
            release.wait(30)
        elif what == "fail":
            raise Unavailable("etcd member does not answer (test)")
        real_probe(i)

    s.probe = slow_probe  # type: ignore[method-assign]
    errors: list[Exception] = []
    stop = threading.Event()
    got: list[tuple[str, float]] = []

    def consume() -> None:
        for batch in s.watch("k/", 1, stop=stop, idle_probe=0.5, on_error=errors.append):
            got.extend((e.key, time.monotonic()) for e in batch.events)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    try:
        assert probing.wait(10)  # the watch went quiet and its probe hangs
        s.put("k/during", b"1")
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [k for k, _ in got] == ["k/during"]  # delivered with the probe unanswered
        release.set()  # the next probe fails: the watch starts again from where it was
        deadline = time.monotonic() + 15
        while not errors and time.monotonic() < deadline:
            time.sleep(0.05)
        assert errors and "test" in str(errors[0])
        s.put("k/after", b"2")
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [k for k, _ in got] == ["k/during", "k/after"]  # nothing twice, nothing lost
    finally:
        release.set()
        stop.set()
        t.join(10)
        s.close()


def test_vnis_are_allocated_serially_and_a_freed_one_waits_its_turn(store: Store) -> None:
    """A removed network's VNI is not the next network's (a host may not have removed
    the old VXLAN device, named after it, yet): the search goes on from the last
    allocation and wraps around."""
    from kanal.cluster.member import VNI_NEXT_KEY, allocate_vni, release_vni

    assert isinstance(store, EtcdStore)
    a = allocate_vni(store, "net-a")
    b = allocate_vni(store, "net-b")
    assert b == a + 1 and allocate_vni(store, "net-a") == a  # the same one when asked again
    assert release_vni(store, "net-a", a)
    assert store.get("vni-of/net-a") is None and store.get(f"vnis/{a}") is None
    c = allocate_vni(store, "net-c")
    assert c == b + 1  # not a, freed just now
    # In a range of three, the search wraps around to what was freed.
    x, y, z = (allocate_vni(store, f"w{k}", first=10, last=12) for k in range(3))
    assert (x, y, z) == (10, 11, 12)
    assert release_vni(store, "w1", 11)
    assert allocate_vni(store, "w3", first=10, last=12) == 11
    # An explicit VNI is that one, and does not move the search.
    store.put(VNI_NEXT_KEY, b"not a number")
    assert allocate_vni(store, "fixed", first=9000, last=9000) == 9000
    assert allocate_vni(store, "after-garbage") == a  # a garbled hint starts over

    # Many threads asking for one network at once, from different places: one VNI.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as ex:
        for n in range(5):
            store.put(VNI_NEXT_KEY, str(5000 + 7 * n).encode())
            got = set(ex.map(allocate_vni, [store] * 8, [f"many-{n}"] * 8))
            assert len(got) == 1, got
