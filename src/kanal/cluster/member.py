"""One host's membership of the cluster: what ``kanald --cluster-store`` starts.

:class:`ClusterMember` composes the pieces of this package for a daemon:

- ``ClusterMember(url, name, advertise_addr, *, ttl=15, grace=300.0,
  resync_interval=30.0, netns_fd=None, timeout=5.0, opts=())`` — ``url`` is
  ``etcd://h1:p[,h2:p...][/prefix]`` (prefix default ``/kanal/``) or ``etcds://``
  (TLS); ``opts`` are ``--cluster-store-opt`` values (kanal.store.etcdconn);
- ``start()`` registers ``nodes/<name>`` (raises Unavailable when etcd is down,
  Conflict when another address holds the name) and starts the OverlayAgent;
  ``stop(revoke=True)``;
- ``pool(network, PoolConfig)`` → the host's :class:`GlobalIpam` for a network
  (one per network, cached);
- ``nodes()`` → ``kanal node ls`` rows (:class:`NodeRow`);
- ``store``, ``registration``, ``agent`` — the parts, for anything else.

VNIs: :func:`allocate_vni` gives a network a VNI unique in the cluster
(``vnis/<vni>`` and ``vni-of/<network>`` claimed with create-if-absent in one
transaction, the network's own claim found again when asked twice), serially from
``vni-next``; :func:`release_vni` frees it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

from kanal.cluster.agent import OverlayAgent
from kanal.cluster.gipam import GlobalIpam, PoolConfig
from kanal.cluster.nodes import NodeRegistration, list_nodes
from kanal.errors import Conflict
from kanal.store import Delete, Put
from kanal.store.etcd import Cmp, EtcdStore, Get, open_etcd

__all__ = [
    "VNI_FIRST",
    "VNI_LAST",
    "ClusterMember",
    "NodeRow",
    "allocate_vni",
    "open_cluster_store",
    "release_vni",
]

VNI_FIRST = 4096  # Docker's overlay starts at 4096 (below: left for hand-made setups)
VNI_LAST = (1 << 24) - 1
VNI_NEXT_KEY = "vni-next"  # where the next automatic VNI search starts (allocate_vni)


def open_cluster_store(url: str, opts: Sequence[str] = (), *, timeout: float = 5.0) -> EtcdStore:
    """An EtcdStore from ``etcd://h:p[,h:p...][/prefix]`` or ``etcds://...`` and
    ``--cluster-store-opt`` values. Raises InvalidConfig."""
    return open_etcd(url, opts, timeout=timeout)


@dataclass(frozen=True)
class NodeRow:
    """One line of ``kanal node ls``."""

    name: str
    advertise_addr: str
    started: float
    epoch: int
    self_: bool
    tls: str = "none"

    def to_dict(self) -> dict[str, object]:
        return {
            "Name": self.name,
            "Addr": self.advertise_addr,
            "Started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "Lease": f"{self.epoch:x}",
            "Self": self.self_,
            "TLS": self.tls,
        }


class ClusterMember:
    def __init__(
        self,
        url: str,
        name: str,
        advertise_addr: str,
        *,
        ttl: int = 15,
        grace: float | None = 300.0,
        resync_interval: float = 30.0,
        netns_fd: int | None = None,
        timeout: float = 5.0,
        opts: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.store = open_cluster_store(url, opts, timeout=timeout)
        self.registration = NodeRegistration(
            self.store, name, advertise_addr, ttl=ttl, tls=self.store.connector.settings.mode
        )
        self.agent = OverlayAgent(
            self.store,
            name,
            advertise_addr,
            netns_fd=netns_fd,
            resync_interval=resync_interval,
            grace=grace,
        )
        self._pools: dict[str, GlobalIpam] = {}

    def start(self) -> None:
        self.registration.start()
        self.agent.start()

    def stop(self, *, revoke: bool = True) -> None:
        self.agent.stop()
        self.registration.stop(revoke=revoke)
        self.store.close()

    def pool(self, network: str, config: PoolConfig) -> GlobalIpam:
        p = self._pools.get(network)
        if p is None or p.config != config:
            p = self._pools[network] = GlobalIpam(
                self.store, network, config, self.name, epoch=self.registration.epoch
            )
        return p

    def nodes(self) -> list[NodeRow]:
        """The registered hosts, by name. Raises Unavailable."""
        return [
            NodeRow(n.name, n.advertise_addr, n.started, n.epoch, n.name == self.name, n.tls)
            for n in sorted(list_nodes(self.store).values(), key=lambda n: n.name)
        ]


def allocate_vni(
    store: EtcdStore, network: str, *, first: int = VNI_FIRST, last: int = VNI_LAST
) -> int:
    """A VNI for ``network``, unique in the cluster; the same one when asked again.

    Serial, as Docker's overlay allocates its VXLAN ids: the first free one from
    where the last allocation in ``first``..``last`` stopped (``vni-next``, a hint
    written with each claim), wrapping around. The VNI a removed network freed is
    not handed out again at once: a host slow to remove that network's VXLAN device
    (named after the VNI) would otherwise find it in the way of the new network's.
    One listing, then a create-if-absent per try. Raises Conflict (none left),
    Unavailable.
    """
    taken = {}
    for e in store.list("vnis/"):
        taken[int(e.key.rsplit("/", 1)[1])] = e.value.decode()
    for vni, net in taken.items():
        if net == network:
            return vni
    start = first
    if first < last:
        hint = store.get(VNI_NEXT_KEY)
        try:
            got = int(hint.value) if hint is not None else first
        except ValueError:
            got = first
        start = got if first <= got <= last else first
    # The network's own claim (``vni-of/<network>``) is made in the same transaction:
    # two hosts asking for one network at once, from different places in the range,
    # cannot both succeed, and the one that loses reads the winner's VNI there.
    own = f"vni-of/{network}"
    for vni in itertools.chain(range(start, last + 1), range(first, start)):
        if vni in taken:
            continue
        key = f"vnis/{vni}"
        nxt = str(vni + 1 if vni < last else first).encode()
        res = store.txn_if(
            [Cmp.absent(key), Cmp.absent(own)],
            [
                Put(key, network.encode()),
                Put(own, str(vni).encode()),
                *([Put(VNI_NEXT_KEY, nxt)] if first < last else []),
            ],
            [Get(own)],
        )
        if res.succeeded:
            return vni
        if res.gets and res.gets[0]:  # a concurrent call for the same network won
            return int(res.gets[0][0].value)
    raise Conflict(f"no VNI left in {first}..{last}")


def release_vni(store: EtcdStore, network: str, vni: int) -> bool:
    """Free ``vni`` if ``network`` holds it."""
    key = f"vnis/{vni}"
    res = store.txn_if(
        [Cmp.value_is(key, network.encode())], [Delete(key), Delete(f"vni-of/{network}")]
    )
    return res.succeeded
