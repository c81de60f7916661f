"""Host registration: ``nodes/<name>`` on a lease that the host keeps alive.

API:

- :class:`Node` — the record: ``name``, ``advertise_addr`` (the underlay address,
  also the VXLAN tunnel endpoint), ``vtep_mac`` (optional), ``started`` (unix
  time), ``epoch`` (the id of the lease the key is on: a new one each time the
  host (re-)registers), ``tls`` (how the host reaches etcd: ``none``, ``tls`` or
  ``mutual`` — with a client certificate; shown by ``kanal node ls``).
- :class:`NodeRegistration` — ``start()`` grants a lease (TTL ``ttl`` s, keepalive
  every TTL/3) and creates ``nodes/<name>`` on it. A name already registered by
  another ``advertise_addr`` is a ``Conflict``; one registered by the same address
  (our previous incarnation, e.g. kanald restarted within the TTL) is taken over.
  If the lease is ever found expired (the host was cut off longer than the TTL),
  it registers again with a new lease and calls ``on_new_epoch(node)``.
  ``stop(revoke=True)`` revokes the lease, so peers drop the host at once.
- :func:`list_nodes` — the live nodes by name.
- :class:`GoneTracker` — pure: given the live names at each observation, which
  hosts have been absent at two observations at least ``grace`` seconds apart
  (Calico's two-observation rule; etcd may extend leases on leader changes, so a
  TTL is a minimum, never an exact time of death).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from kanal.errors import Conflict, DecodeError, Unavailable
from kanal.store.etcd import Cmp, EtcdStore, Get, Lease, LeasePut

__all__ = ["NODES_PREFIX", "GoneTracker", "Node", "NodeRegistration", "list_nodes", "node_key"]

NODES_PREFIX = "nodes/"


def node_key(name: str) -> str:
    return NODES_PREFIX + name


@dataclass(frozen=True)
class Node:
    name: str
    advertise_addr: str
    started: float
    epoch: int
    vtep_mac: str = ""
    tls: str = "none"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @staticmethod
    def from_json(raw: bytes) -> Node:
        try:
            d = json.loads(raw)
            return Node(
                name=str(d["name"]),
                advertise_addr=str(d["advertise_addr"]),
                started=float(d.get("started", 0)),
                epoch=int(d.get("epoch", 0)),
                vtep_mac=str(d.get("vtep_mac", "")),
                tls=str(d.get("tls", "none")),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise DecodeError("invalid node record", str(e)) from e


def list_nodes(store: EtcdStore, *, timeout: float | None = None) -> dict[str, Node]:
    """The registered (live) nodes by name. Raises Unavailable."""
    out = {}
    for e in store.list(NODES_PREFIX, timeout=timeout):
        try:
            n = Node.from_json(e.value)
        except DecodeError:
            continue
        out[n.name] = n
    return out


class NodeRegistration:
    def __init__(
        self,
        store: EtcdStore,
        name: str,
        advertise_addr: str,
        *,
        ttl: int = 15,
        vtep_mac: str = "",
        on_new_epoch: Callable[[Node], None] | None = None,
        tls: str = "none",
    ) -> None:
        self.store = store
        self.name = name
        self.advertise_addr = advertise_addr
        self.ttl = ttl
        self.vtep_mac = vtep_mac
        self.tls = tls
        self.on_new_epoch = on_new_epoch
        self.started = time.time()
        self._lease: Lease | None = None
        self._node: Node | None = None
        self._stopped = threading.Event()

    @property
    def node(self) -> Node:
        if self._node is None:
            raise Unavailable(f"node {self.name!r} is not registered")
        return self._node

    @property
    def epoch(self) -> int:
        """The current lease id (0 before start)."""
        return self._node.epoch if self._node else 0

    def start(self) -> Node:
        """Register now. Raises Unavailable (etcd down), Conflict (name taken)."""
        self._stopped.clear()
        return self._register()

    def _register(self) -> Node:
        lease = Lease(self.store, self.ttl, on_expired=self._expired).start()
        node = Node(self.name, self.advertise_addr, self.started, lease.id, self.vtep_mac, self.tls)
        key = node_key(self.name)
        try:
            for _ in range(10):
                res = self.store.txn_if(
                    [Cmp.absent(key)], [LeasePut(key, node.to_json(), lease.id)], [Get(key)]
                )
                if res.succeeded:
                    break
                if not res.gets or not res.gets[0]:
                    continue  # it expired in between: try the create again
                have = res.gets[0][0]
                old = Node.from_json(have.value)
                if old.advertise_addr != self.advertise_addr:
                    raise Conflict(
                        f"node name {self.name!r} is registered by {old.advertise_addr}",
                        "another host uses this name",
                    )
                # Our previous incarnation: move the key onto the new lease (peers see
                # an update, not a delete).
                res = self.store.txn_if(
                    [Cmp.mod_is(key, have.mod_rev)], [LeasePut(key, node.to_json(), lease.id)]
                )
                if res.succeeded:
                    if old.epoch and old.epoch != lease.id:
                        self.store.lease_revoke(old.epoch)
                    break
            else:
                raise Conflict(f"node {self.name!r}: registration kept losing races")
        except BaseException:
            lease.stop()
            try:
                self.store.lease_revoke(lease.id, timeout=1.0)
            except Unavailable:
                pass
            raise
        self._lease = lease
        self._node = node
        return node

    def _expired(self, _lease: Lease) -> None:
        # Runs in the keepalive thread: register again until it works or we stop.
        while not self._stopped.is_set():
            try:
                node = self._register()
            except (Unavailable, Conflict):
                self._stopped.wait(1.0)
                continue
            if self.on_new_epoch is not None:
                self.on_new_epoch(node)
            return

    def stop(self, *, revoke: bool = True) -> None:
        """Stop the keepalive; with ``revoke`` delete the key now (else it lapses)."""
        self._stopped.set()
        if self._lease is not None:
            if revoke:
                try:
                    self._lease.revoke()
                except Unavailable:
                    self._lease.stop()
            else:
                self._lease.stop()


class GoneTracker:
    """Which hosts have been gone long enough to free what they held. Pure logic."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._first_absent: dict[str, float] = {}

    def observe(self, live: Iterable[str], owners: Iterable[str], now: float) -> set[str]:
        """One observation: ``live`` are the registered hosts, ``owners`` the hosts that
        hold something. Returns the owners absent now and at an observation at least
        ``grace`` seconds earlier (absent all along in between as far as seen)."""
        alive = set(live)
        gone = set()
        for host in set(owners) - alive:
            first = self._first_absent.setdefault(host, now)
            if now - first >= self.grace and now > first:
                gone.add(host)
        for host in list(self._first_absent):
            if host in alive:
                del self._first_absent[host]  # it came back: start over next time
        return gone

    def forget(self, host: str) -> None:
        """The host holds nothing any more."""
        self._first_absent.pop(host, None)
