"""NetworkRecords.by_ids: what an inspect shows of the networks a sandbox is on, without
a linearizable read of the cluster store unless a network is not known yet."""

from __future__ import annotations

from kanal.engine.context import EngineContext
from kanal.engine.model import Network
from kanal.engine.netrecords import NetworkRecords
from kanal.store.memory import MemoryStore


class StubCluster:
    """The two reads by_ids may make, counted (a pure-logic stand-in for etcd)."""

    def __init__(self, known: list[Network], listed: list[Network]) -> None:
        self.known, self.listed = known, listed
        self.known_calls = self.list_calls = 0

    def known_networks(self) -> list[Network]:
        self.known_calls += 1
        return list(self.known)

    def networks(self) -> list[Network]:
        self.list_calls += 1
        return list(self.listed)


def _net(i: str, name: str, scope: str = "local") -> Network:
    return Network(id=i * 64, name=name, driver="bridge", scope=scope)


def _records(cluster: StubCluster | None, *local: Network) -> NetworkRecords:
    store = MemoryStore()
    for n in local:
        store.put(f"networks/{n.id}", n.to_json())
    return NetworkRecords(store, EngineContext(state_dir="/nonexistent", cluster=cluster))


def test_local_networks_need_no_cluster_read() -> None:
    br, host = _net("a", "bridge"), _net("b", "host")
    cluster = StubCluster([], [])
    got = _records(cluster, br, host).by_ids({br.id}, frozenset({"host"}))
    assert set(got) == {br.id, host.id}
    assert got[host.id].name == "host"
    assert (cluster.known_calls, cluster.list_calls) == (0, 0)


def test_a_known_global_network_is_not_listed_again() -> None:
    ov = _net("c", "ov", "global")
    cluster = StubCluster([ov], [])
    got = _records(cluster, _net("a", "bridge")).by_ids({ov.id})
    assert got == {ov.id: ov}
    assert cluster.list_calls == 0


def test_an_unknown_id_lists_the_cluster_once() -> None:
    old, new = _net("c", "old", "global"), _net("d", "new", "global")
    cluster = StubCluster([old], [old, new])
    got = _records(cluster).by_ids({old.id, new.id})
    assert set(got) == {old.id, new.id}
    assert cluster.list_calls == 1


def test_an_id_nowhere_is_left_out() -> None:
    cluster = StubCluster([], [])
    assert _records(cluster).by_ids({"e" * 64}) == {}
    assert cluster.list_calls == 1
    assert _records(None, _net("a", "bridge")).by_ids({"e" * 64}) == {}
