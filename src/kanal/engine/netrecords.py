"""Where networks are recorded: this host's store, or the cluster's for global ones.

A local network is ``networks/<id>`` in the state store; a global (overlay)
network lives in the cluster store, seen by every host. Lookups follow docker's
order: full id, name, unique id prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kanal.engine.model import Network
from kanal.errors import Conflict, InvalidConfig, NotFound
from kanal.store import Store

if TYPE_CHECKING:
    from kanal.engine.cluster import Cluster
    from kanal.engine.context import EngineContext

__all__ = ["NetworkRecords"]


class NetworkRecords:
    """Reads and writes network records where each lives."""

    def __init__(self, store: Store, ctx: EngineContext) -> None:
        self.store = store
        self.ctx = ctx

    @property
    def cluster(self) -> Cluster | None:
        c: Cluster | None = self.ctx.cluster
        return c

    def all(self) -> list[Network]:
        """This host's networks, then the cluster's global ones (when in a cluster)."""
        local = self.local()
        if self.cluster is None:
            return local
        return local + self.cluster.networks()

    def local(self) -> list[Network]:
        return [Network.from_json(e.value) for e in self.store.list("networks/")]

    def by_ids(self, ids: set[str], names: frozenset[str] = frozenset()) -> dict[str, Network]:
        """The networks with those ids that exist (and this host's named one of
        ``names``), for showing what refers to them: an inspect. This host's, then the
        cluster's as last listed; the cluster store is asked only for an id not among
        them. A network's id, name and addresses never change, so a known one is
        current enough, and an inspect does not wait for a linearizable read of the
        cluster (seconds while etcd is slow)."""
        out = {n.id: n for n in self.local() if n.id in ids or n.name in names}
        if self.cluster is None or ids <= out.keys():
            return out
        out.update((n.id, n) for n in self.cluster.known_networks() if n.id in ids)
        if not ids <= out.keys():
            out.update((n.id, n) for n in self.cluster.networks() if n.id in ids)
        return out

    def save(self, net: Network, *, new: bool = False) -> None:
        """Write the network where it lives: the cluster store for global networks."""
        if net.scope == "global":
            if self.cluster is None:
                raise InvalidConfig(f"network {net.name} is global: kanald has no cluster")
            if new:
                self.cluster.add_network(net)
            else:
                self.cluster.save_network(net)
            return
        self.store.put(f"networks/{net.id}", net.to_json(), expect=0 if new else None)

    def forget(self, net: Network) -> None:
        if net.scope == "global" and self.cluster is not None:
            self.cluster.remove_network(net)
        else:
            self.store.delete(f"networks/{net.id}")

    def get(self, ref: str) -> Network:
        """By full id, name, or unique id prefix (docker's lookup order)."""
        # The common cases without listing every network (nor asking the cluster):
        # a full id of this host's, or a name of this host's that is no full id.
        if ref and "/" not in ref:
            e = self.store.get(f"networks/{ref}")
            if e is not None:
                return Network.from_json(e.value)
        local = self.local()
        if len(ref) != 64:
            for n in local:
                if n.name == ref:
                    return n
        nets = local + (self.cluster.networks() if self.cluster is not None else [])
        for n in nets:
            if n.id == ref:
                return n
        for n in nets:
            if n.name == ref:
                return n
        hits = [n for n in nets if ref and n.id.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise Conflict(f"network {ref} is ambiguous ({len(hits)} matches found based on ID)")
        raise NotFound(f"network {ref} not found")
