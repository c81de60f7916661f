"""This host's membership of a kanal cluster, as the engine sees it.

:class:`Cluster` wraps kanal.cluster's :class:`~kanal.cluster.member.ClusterMember`
(the etcd store, the node's registration under a lease, the overlay agent, the
global allocators) and adds what the engine keeps cluster-wide: the records of
*global* networks (``-d overlay``), which every host sees::

    networks/<id>        Network JSON (scope "global")
    netnames/<name>      network id: one name cluster-wide (same txn as the record)
    vnis/<n>             network id (kanal.cluster.member.allocate_vni, which
                         also keeps vni-of/<network id> and vni-next)

When etcd cannot be reached, :meth:`networks` answers from the last listing it
got, so the controller's local networks keep working; changes to global networks
raise ``Unavailable`` until etcd is back.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from kanal.cluster.gipam import PoolConfig
from kanal.cluster.member import VNI_FIRST, VNI_LAST, ClusterMember, allocate_vni, release_vni
from kanal.engine.model import Network, validate_name
from kanal.errors import Conflict, InvalidConfig, Unavailable
from kanal.store import Delete, Put, StoreConflict

if TYPE_CHECKING:
    from kanal.cluster.agent import OverlayAgent
    from kanal.cluster.gipam import GlobalIpam
    from kanal.store.etcd import EtcdStore

__all__ = ["Cluster"]

log = logging.getLogger("kanal.cluster")


class Cluster:
    """One host of a cluster (thread-safe).

    Args:
        url: ``etcd://h:p[,h:p...][/prefix]`` or ``etcds://...`` (TLS).
        node: this host's name (unique in the cluster).
        advertise_addr: its underlay IPv4 address, the VXLAN tunnel endpoint.
        ttl: the node lease's TTL (s): peers drop this host's entries that long
            after it died.
        grace: how long a host must be gone before its address blocks and
            endpoint records are freed (s).
        resync: the period of the agent's full reconcile (s).
        opts: ``--cluster-store-opt`` values (certificates, etcd user).
    """

    def __init__(
        self,
        url: str,
        node: str,
        advertise_addr: str,
        *,
        ttl: int = 15,
        grace: float = 60.0,
        resync: float = 30.0,
        opts: Sequence[str] = (),
    ) -> None:
        validate_name(node, "node")
        try:
            if ipaddress.ip_address(advertise_addr).version != 4:
                raise ValueError
        except ValueError:
            raise InvalidConfig(f"invalid advertise address {advertise_addr!r}: IPv4") from None
        self.member: ClusterMember = ClusterMember(
            url, node, advertise_addr, ttl=ttl, grace=grace, resync_interval=resync, opts=opts
        )
        self.node = node
        self.advertise_addr = advertise_addr
        self._lock = threading.Lock()
        self._networks: list[Network] = []  # the last listing (served while etcd is down)
        self._listed = False  # whether _networks was ever read from etcd
        # One API request's listing of the global networks (see one_listing).
        self._request = threading.local()
        #: called (in a background thread) when this host registered again after its
        #: lease had expired: what it held may have been freed meanwhile
        self.on_rejoin: list[Callable[[], object]] = []
        self.member.registration.on_new_epoch = self._rejoined

    @property
    def store(self) -> EtcdStore:
        return self.member.store

    @property
    def agent(self) -> OverlayAgent:
        return self.member.agent

    def start(self) -> None:
        """Register and start the agent. Raises Unavailable, Conflict (name taken)."""
        self.member.start()

    def _rejoined(self, node: object) -> None:
        log.warning("registered again as %s after the lease expired", self.node)
        for fn in self.on_rejoin:
            try:
                fn()
            except Exception:  # one hook must not stop the others
                log.exception("rejoin hook failed")

    def stop(self) -> None:
        """Stop; the lease is left to expire (a restart within the TTL takes the
        registration over, so peers keep this host's entries meanwhile)."""
        self.member.stop(revoke=False)

    def nodes(self) -> list[dict[str, object]]:
        """``kanal node ls`` rows; this host's with its link health."""
        rows = [r.to_dict() for r in self.member.nodes()]
        err = self.agent.last_error
        for r in rows:
            if r["Self"]:
                r["Healthy"] = err is None
                r["Error"] = str(err) if err is not None else ""
        return rows

    # --- global networks ---------------------------------------------------------

    @contextmanager
    def one_listing(self) -> Iterator[None]:
        """Within the block (one API request, in its thread), the global networks
        are read from etcd once: a ``kanal run`` asks for them five times (to find its
        network, for the sandbox's hosts file, DNS and answer), each a linearizable
        read (~0.8 s over a slow underlay). A request sees one listing, as if it had
        run at that instant; a network it creates, saves or removes itself drops
        the listing, so it reads its own writes."""
        if getattr(self._request, "active", False):
            yield
            return
        self._request.active, self._request.raw = True, None
        try:
            yield
        finally:
            self._request.active, self._request.raw = False, None

    def networks(self) -> list[Network]:
        scoped = getattr(self._request, "active", False)
        raw: list[bytes] | None = self._request.raw if scoped else None
        if raw is None:
            try:
                raw = [e.value for e in self.store.list("networks/")]
            except Unavailable as e:
                log.warning("cluster store unavailable, using the last known networks: %s", e)
                with self._lock:
                    return list(self._networks)
            if scoped:
                self._request.raw = raw
        # Parsed anew each time: a caller may change the objects it gets.
        nets = [Network.from_json(v) for v in raw]
        with self._lock:
            self._networks = nets
            self._listed = True
        return nets

    def known_networks(self) -> list[Network]:
        """The global networks as last read from etcd (no round trip: for the
        embedded DNS's serving thread, which must never wait for etcd)."""
        with self._lock:
            if self._listed:
                return list(self._networks)
        return self.networks()

    def add_network(self, net: Network) -> None:
        """Store a new global network; its name must be free cluster-wide (Conflict)."""
        self._request.raw = None
        try:
            self.store.txn(
                [
                    Put(f"networks/{net.id}", net.to_json(), 0),
                    Put(f"netnames/{net.name}", net.id.encode(), 0),
                ]
            )
        except StoreConflict:
            raise Conflict(f"network with name {net.name} already exists") from None

    def save_network(self, net: Network) -> None:
        self._request.raw = None
        self.store.put(f"networks/{net.id}", net.to_json())

    def remove_network(self, net: Network) -> None:
        """Drop the network's records cluster-wide (name, addresses); idempotent."""
        self._request.raw = None
        self.store.txn([Delete(f"networks/{net.id}"), Delete(f"netnames/{net.name}")])
        for pool in (net.id, f"{net.id}-v6"):
            for e in self.store.list(f"ipam/{pool}/"):
                self.store.delete(e.key)

    def endpoint_count(self, net_id: str) -> int:
        """Endpoints of the network on every host (from etcd)."""
        return len(self.store.list(f"overlay/{net_id}/endpoints/"))

    def allocate_vni(self, net_id: str, want: int = 0) -> int:
        """A VXLAN id unique in the cluster: ``want``, or the first free one."""
        if want and not 1 <= want <= VNI_LAST:
            raise InvalidConfig(f"invalid VXLAN id {want}: want 1-{VNI_LAST}")
        try:
            return allocate_vni(self.store, net_id, first=want or VNI_FIRST, last=want or VNI_LAST)
        except Conflict:
            if want:
                raise Conflict(f"VXLAN id {want} is used by another network") from None
            raise

    def release_vni(self, vni: int, net_id: str) -> None:
        release_vni(self.store, net_id, vni)

    def release_vnis_of(self, net_id: str) -> None:
        """Free any VNI ``net_id`` holds (recovery of a create that stored nothing else)."""
        for e in self.store.list("vnis/"):
            if e.value.decode() == net_id:
                release_vni(self.store, net_id, int(e.key.rsplit("/", 1)[1]))

    # --- addresses ---------------------------------------------------------------

    def ipam(self, net: Network, version: int) -> GlobalIpam:
        """This host's allocator for the network's subnet of IP ``version``."""
        cfg = next((c for c in net.ipam if ipaddress.ip_network(c.subnet).version == version), None)
        if cfg is None:
            raise InvalidConfig(f"network {net.name} has no IPv{version} subnet")
        sub = ipaddress.ip_network(cfg.subnet)
        # Blocks of 64 addresses (docker's overlay has none; Calico uses /26).
        block = max(sub.prefixlen, sub.max_prefixlen - 6)
        reserved = tuple(x for x in (cfg.gateway, *cfg.aux_addresses.values()) if x)
        pool = net.id if version == 4 else f"{net.id}-v6"
        return self.member.pool(pool, PoolConfig(cfg.subnet, block, reserved))
