"""The overlay agent of one host: etcd's view of the overlay → this host's kernel.

:class:`OverlayAgent` keeps, for every overlay network attached on this host, the
VXLAN device's FDB / neighbour (/ route) entries equal to what
:func:`kanal.cluster.vxlan.desired_entries` computes from

- ``overlay/<net>/endpoints/<id>`` records (``{ip, mac, host, vtep}``), and
- ``nodes/<name>`` (only endpoints of *registered* hosts are programmed: when a
  host's lease expires its node key goes and every peer drops its entries).

How it keeps them (watches, incremental programming, the periodic reconcile,
garbage collection, answering VXLAN misses, etcd outages): docs/overlay.md,
"The agent".

API (thread-safe):

- ``OverlayAgent(store, host, advertise_addr, *, netns_fd=None,
  resync_interval=30.0, grace=None, host_routes=False)``;
- ``start()`` / ``stop()``;
- ``attach(link: OverlayLink)`` — create/adopt the network's VXLAN device on its
  bridge and program it now; ``detach(network, delete=True)``;
- ``publish(network, endpoint_id, ip, mac, *, name="", aliases=())`` /
  ``unpublish(network, endpoint_id)`` — this host's endpoints (raise Unavailable
  when etcd is down);
- ``endpoints(network)`` — the network's endpoint records (this host's and live
  hosts'), for the embedded DNS; ``subscribe(fn)`` — ``fn(network)`` each time a
  network was (re)programmed;
- ``reconcile()`` — list and program everything now (raises Unavailable);
- ``collect_garbage(now=None)`` — one GC round now; returns what was freed;
- ``programmed(network)`` — the entries last programmed (a Desired);
- ``healthy``, ``last_error``, ``synced`` (a threading.Event set after the
  first full listing of both prefixes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from kanal.cluster import gipam
from kanal.cluster.agentstats import OVERLAY_PREFIX, AgentStats, WatchLoops
from kanal.cluster.misses import MissAnswering
from kanal.cluster.nodes import NODES_PREFIX, GoneTracker, Node
from kanal.cluster.vxlan import (
    Changes,
    Desired,
    EndpointRecord,
    OverlayLink,
    Tally,
    apply,
    apply_changes,
    contribution,
    delete_device,
    desired_entries,
    diff,
    endpoint_key,
    ensure_device,
)
from kanal.errors import DecodeError, KanalError, NotFound, Unavailable
from kanal.netlink.neighmiss import Announcer
from kanal.netlink.vxlan import VxlanNetlink
from kanal.store import Delete, Entry
from kanal.store.etcd import Cmp, EtcdStore, WatchBatch

__all__ = ["OVERLAY_PREFIX", "OverlayAgent"]

log = logging.getLogger("kanal.cluster")


def _parse_endpoint_key(key: str) -> tuple[str, str] | None:
    """``overlay/<net>/endpoints/<id>`` → (net, id)."""
    parts = key.split("/")
    if len(parts) == 4 and parts[0] == "overlay" and parts[2] == "endpoints":
        return parts[1], parts[3]
    return None


class OverlayAgent(MissAnswering, WatchLoops):
    def __init__(
        self,
        store: EtcdStore,
        host: str,
        advertise_addr: str,
        *,
        netns_fd: int | None = None,
        resync_interval: float = 30.0,
        grace: float | None = None,
        host_routes: bool = False,
    ) -> None:
        self.store = store
        self.host = host
        self.advertise_addr = advertise_addr
        self.netns_fd = netns_fd
        self.resync_interval = resync_interval
        self.grace = grace
        self.host_routes = host_routes
        self.synced = threading.Event()
        self.last_error: Exception | None = None
        self._lock = threading.RLock()  # the model and the kernel programming
        self._nodes: dict[str, Node] = {}
        self._eps: dict[str, EndpointRecord] = {}  # by key
        self._links: dict[str, OverlayLink] = {}
        self._tally: dict[str, Tally] = {}  # what is programmed, per network
        self._deltas: dict[str, list[tuple[EndpointRecord | None, EndpointRecord | None]]] = {}
        self._nl: VxlanNetlink | None = None  # the incremental path's socket
        self._remote: dict[str, dict[str, EndpointRecord]] = {}  # net -> ip -> programmed
        self._dev_index: dict[str, int] = {}  # net -> its device's ifindex
        self._pending: dict[tuple[str, str], float] = {}  # (net, ip) missed -> until
        self._announcer: Announcer | None = None
        self._listed: set[str] = set()
        self._rev: dict[str, int] = {}  # the revision the model of each prefix is at
        self._rev_moved = threading.Condition()  # notified when _rev advances
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ip_gc = GoneTracker(grace or 0.0)
        self._ep_gc = GoneTracker(grace or 0.0)
        self._listeners: list[Callable[[str], None]] = []
        self._changed: set[str] = set()  # programmed networks the listeners are owed
        self.stats = AgentStats()  # read by kanald's metrics

    # ---- lifecycle ------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self.last_error is None

    def start(self) -> None:
        self._stop.clear()
        for name, fn in (
            ("nodes", lambda: self._watch_loop(NODES_PREFIX, self._set_nodes, self._node_events)),
            (
                "overlay",
                lambda: self._watch_loop(OVERLAY_PREFIX, self._set_endpoints, self._ep_events),
            ),
            ("resync", self._periodic),
            ("misses", self._miss_loop),
        ):
            t = threading.Thread(target=fn, name=f"kanal-overlay-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()
        self._threads.clear()
        with self._lock:
            if self._nl is not None:
                self._nl.close()
                self._nl = None

    # ---- networks and endpoints -------------------------------------------------------
    def attach(self, link: OverlayLink) -> None:
        """Create/adopt ``link``'s VXLAN device and program it from what is known.

        Raises Conflict (a device with that name but another VNI/local/port),
        NotFound (no such bridge).
        """
        with self._lock:
            self._dev_index[link.network] = ensure_device(link, self.netns_fd)
            self._links[link.network] = link
            self._program([link.network])
        self._notify()

    def detach(self, network: str, *, delete: bool = True) -> None:
        with self._lock:
            link = self._links.pop(network, None)
            self._tally.pop(network, None)
            self._deltas.pop(network, None)
            self._remote.pop(network, None)
            self._dev_index.pop(network, None)
            if link is not None and delete:
                delete_device(link, self.netns_fd)

    def publish(
        self,
        network: str,
        endpoint_id: str,
        ip: str,
        mac: str,
        *,
        name: str = "",
        aliases: Iterable[str] = (),
    ) -> int:
        """Announce this host's endpoint (peers program it); returns the etcd revision
        of the record (see :meth:`wait_seen`). Raises Unavailable."""
        rec = EndpointRecord(ip, mac.lower(), self.host, self.advertise_addr, name, tuple(aliases))
        return self.store.put(endpoint_key(network, endpoint_id), rec.to_json())

    def wait_seen(self, rev: int, timeout: float) -> bool:
        """Wait until this host's own watch of the endpoints has delivered revision
        ``rev`` (False after ``timeout`` s).

        A record etcd has committed reaches the other hosts through their watches, which
        are served by the member this host's watch is usually on too (the one requests
        last reached). When that member applies after the write returned, every peer
        learns late together; waiting for our own watch
        makes ``kanal run`` return once the record is out where peers read it,
        rather than leaving the wait to the new container's first packets."""
        deadline = time.monotonic() + timeout
        with self._rev_moved:
            while self._rev.get(OVERLAY_PREFIX, 0) < rev:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._rev_moved.wait(left)
        return True

    def devices(self) -> dict[str, str]:
        """Network id -> the name of its VXLAN device here (attached networks)."""
        with self._lock:
            return {net: link.name for net, link in self._links.items()}

    def endpoints(self, network: str) -> list[EndpointRecord]:
        """The network's endpoints as last seen: this host's and those of live hosts
        (what a DNS server answers names from; no etcd round trip)."""
        pfx = endpoint_key(network, "")
        with self._lock:
            return sorted(
                (
                    r
                    for k, r in self._eps.items()
                    if k.startswith(pfx) and (r.host == self.host or r.host in self._nodes)
                ),
                key=lambda r: r.ip,
            )

    def subscribe(self, fn: Callable[[str], None]) -> None:
        """Call ``fn(network)`` (in the agent's threads) each time an attached network
        was programmed: after a change of its endpoints or of the hosts, and at each
        full reconcile. ``fn`` must be quick and not raise; it is called without the
        agent's lock held, so it may take locks of its own and call the agent."""
        self._listeners.append(fn)

    def unpublish(self, network: str, endpoint_id: str) -> bool:
        return self.store.delete(endpoint_key(network, endpoint_id))

    def programmed(self, network: str) -> Desired:
        with self._lock:
            t = self._tally.get(network)
            return t.desired() if t is not None else Desired()

    # ---- model updates ----------------------------------------------------------------
    def _set_nodes(self, entries: Iterable[Entry]) -> set[str]:
        nodes = {}
        for e in entries:
            try:
                n = Node.from_json(e.value)
            except DecodeError:
                continue
            nodes[n.name] = n
        with self._lock:
            self._nodes = nodes
            return set(self._links)

    def _node_events(self, batch: WatchBatch) -> set[str]:
        with self._lock:
            for ev in batch.events:
                name = ev.key[len(NODES_PREFIX) :]
                if ev.type == "delete":
                    self._nodes.pop(name, None)
                    continue
                try:
                    self._nodes[name] = Node.from_json(ev.value)
                except DecodeError:
                    continue
            return set(self._links)

    def _set_endpoints(self, entries: Iterable[Entry]) -> set[str]:
        eps = {}
        for e in entries:
            if _parse_endpoint_key(e.key) is None:
                continue
            try:
                eps[e.key] = EndpointRecord.from_json(e.value)
            except DecodeError:
                continue
        with self._lock:
            self._eps = eps
            return set(self._links)

    def _ep_events(self, batch: WatchBatch) -> set[str]:
        touched = set()
        with self._lock:
            for ev in batch.events:
                parsed = _parse_endpoint_key(ev.key)
                if parsed is None:
                    continue
                touched.add(parsed[0])
                old = self._eps.pop(ev.key, None)
                new = None
                if ev.type != "delete":
                    try:
                        new = self._eps[ev.key] = EndpointRecord.from_json(ev.value)
                    except DecodeError:
                        pass
                if parsed[0] in self._links:  # networks attached here only
                    self._deltas.setdefault(parsed[0], []).append((old, new))
        return touched

    # ---- programming ------------------------------------------------------------------
    def _program(self, networks: Iterable[str], *, mode: str = "full") -> None:
        """Program the networks' devices from the model. ``mode``:

        - ``full``: read the kernel's entries and make them exactly what is wanted
          (attach, listings, the periodic reconcile);
        - ``recompute``: the wanted entries computed again from every endpoint and
          the difference from what is programmed applied (the hosts changed);
        - ``delta``: only the endpoints the watch changed (see ``_ep_events``).
        """
        with self._lock:
            vteps = {n.name: n.advertise_addr for n in self._nodes.values()}
            for net in sorted(set(networks) & set(self._links)):
                link = self._links[net]
                deltas = self._deltas.pop(net, [])
                tally = self._tally.get(net)
                try:
                    try:
                        if mode == "delta" and tally is not None:
                            ch = self._apply_deltas(net, tally, deltas, vteps)
                        else:
                            ch = self._program_all(net, link, vteps, full=mode == "full")
                    except NotFound:
                        # deleted behind our back
                        self._dev_index[net] = ensure_device(link, self.netns_fd)
                        ch = self._program_all(net, link, vteps, full=True)
                except KanalError as e:
                    log.warning("overlay %s: programming failed: %s", net, e)
                    self.last_error = e
                    self._tally.pop(net, None)  # the kernel is unknown: next time in full
                    continue
                if ch:
                    log.debug("overlay %s: %s", net, ch)
                    self.stats.drift_repairs += len(ch) if mode == "full" and tally else 0
                self._answer_pending(net)
                self._changed.add(net)

    def _program_all(
        self, net: str, link: OverlayLink, vteps: dict[str, str], *, full: bool
    ) -> Changes:
        pfx = endpoint_key(net, "")
        eps = [r for k, r in self._eps.items() if k.startswith(pfx)]
        want = desired_entries(eps, vteps, self.host, host_routes=self.host_routes)
        old = self._tally.get(net)
        if full or old is None:
            ch = apply(link.name, want, self.netns_fd)
        else:
            have = old.desired()
            ch = diff(want, have.fdb, have.neigh, have.routes)
            self._apply_changes(link, ch)
        contributions = [self._contribution(r, vteps) for r in eps]
        self._tally[net] = Tally.of(contributions)
        self._remote[net] = {r.ip: r for r, d in zip(eps, contributions) if d.neigh}
        return ch

    def _apply_deltas(
        self,
        net: str,
        tally: Tally,
        deltas: list[tuple[EndpointRecord | None, EndpointRecord | None]],
        vteps: dict[str, str],
    ) -> Changes:
        ch = Changes()
        remote = self._remote.setdefault(net, {})
        for old, new in deltas:
            if old is not None:
                tally.remove(self._contribution(old, vteps), ch)
                if remote.get(old.ip) == old:
                    del remote[old.ip]
            if new is not None:
                d = self._contribution(new, vteps)
                tally.add(d, ch)
                if d.neigh:
                    remote[new.ip] = new
        tally.finish(ch)
        self._apply_changes(self._links[net], ch)
        return ch

    def _contribution(self, r: EndpointRecord, vteps: dict[str, str]) -> Desired:
        return contribution(r, vteps, self.host, host_routes=self.host_routes)

    def _apply_changes(self, link: OverlayLink, ch: Changes) -> None:
        """Apply on one long-lived socket (lock held): opening one per change costs
        more than the change."""
        if not ch:
            return
        if self._nl is None:
            self._nl = VxlanNetlink(self.netns_fd)
        try:
            apply_changes(link.name, ch, nl=self._nl)
        except KanalError:
            self._nl.close()
            self._nl = None
            raise

    def _notify(self) -> None:
        """Call the listeners for the networks programmed since the last call — never
        under the agent's lock: a listener may take a lock of its own that is held
        while the agent is called (the embedded DNS builds its index from
        ``endpoints()`` under its lock; called back under ours, the two deadlock)."""
        with self._lock:
            nets, self._changed = self._changed, set()
        for net in sorted(nets):
            for fn in self._listeners:
                fn(net)

    def reconcile(self) -> None:
        """List both prefixes and program every attached network now, from the kernel's
        own entries (drift is repaired). Raises Unavailable.

        The listings are skipped when etcd has written nothing since the model's
        revisions (one small request instead: with a thousand endpoints every host
        re-reading them each period is most of an idle cluster's etcd traffic)."""
        rev = self.store.revision()
        self.stats.reconciles += 1
        with self._lock:
            current = self._listed >= {NODES_PREFIX, OVERLAY_PREFIX} and rev <= min(
                self._rev.get(NODES_PREFIX, 0), self._rev.get(OVERLAY_PREFIX, 0)
            )
        if not current:
            nodes, nrev = self.store.snapshot(NODES_PREFIX)
            eps, erev = self.store.snapshot(OVERLAY_PREFIX)
            with self._lock:
                self._take(NODES_PREFIX, nrev, lambda: self._set_nodes(nodes))
                self._take(OVERLAY_PREFIX, erev, lambda: self._set_endpoints(eps))
        with self._lock:
            self._program(set(self._links))
        self._notify()

    def _take(self, prefix: str, rev: int, update: Callable[[], set[str]]) -> set[str]:
        """Apply a listing or a watch batch at ``rev`` unless the model is already newer
        (a reconcile's listing can be older than the events a watch applied since)."""
        with self._lock:
            if rev < self._rev.get(prefix, 0):
                return set()
            self._rev[prefix] = rev
            out = update()
        with self._rev_moved:
            self._rev_moved.notify_all()
        return out

    # ---- threads ------------------------------------------------------------------------
    def _periodic(self) -> None:
        while not self._stop.wait(self.resync_interval):
            try:
                self.reconcile()
                self.last_error = None  # etcd answers again
                if self.grace is not None and self._collector():
                    self.collect_garbage()
            except Unavailable as e:
                self._error(e)
            except KanalError as e:
                log.warning("overlay agent: periodic reconcile: %s", e)

    def _collector(self) -> bool:
        """Whether this host collects garbage this round: the first live host by name
        does. Every host listing every address block each period is most of an idle
        cluster's etcd traffic, and one collector is enough; when it goes, the next
        takes over (a host that does not see itself registered collects too: each
        delete is conditional, several collectors are safe)."""
        with self._lock:
            live = sorted(self._nodes)
        return not live or live[0] == self.host or self.host not in live

    def collect_garbage(self, now: float | None = None) -> list[str]:
        """One GC round: address blocks and endpoint records of hosts gone for ``grace``.

        Returns the freed blocks (``<pool>/<block>``) and endpoint keys. Raises Unavailable.
        """
        now = time.monotonic() if now is None else now
        freed = gipam.collect_garbage(self.store, self._ip_gc, now)
        live = {e.key[len(NODES_PREFIX) :] for e in self.store.list(NODES_PREFIX)}
        with self._lock:  # the hosts with records, from the model (kept by the watch)
            owners = {r.host for r in self._eps.values()}
        gone = self._ep_gc.observe(live, owners, now)
        records = []
        for e in self.store.list(OVERLAY_PREFIX) if gone else ():
            if _parse_endpoint_key(e.key) is None:
                continue
            try:
                records.append((e, EndpointRecord.from_json(e.value)))
            except DecodeError:
                continue
        for e, r in records:
            if r.host in gone:
                res = self.store.txn_if([Cmp.value_is(e.key, e.value)], [Delete(e.key)])
                if res.succeeded:
                    freed.append(e.key)
        for h in gone:
            self._ep_gc.forget(h)
        return freed
