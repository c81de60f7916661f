"""The network controller: owns networks and endpoints.

State is in the store (``networks/<id>``, ``endpoints/<network id>/<endpoint id>``,
``ipam/...``, ``ports/...``); the kernel is the drivers' business (made by the
injected driver factory). Every change is written to the store before the
kernel is touched and undone if the kernel step fails, so reconcile (run at
start) can always bring the kernel back to the store.

Around the controller, each in its own module: where addresses come from
(:mod:`.addressing`), built-in and CNI-dir networks (:mod:`.autonets`), dockerd's external
endpoints (:mod:`.external`; the controller's methods of those names hand over),
cluster address loss (:mod:`.clusterloss`) and reconcile and crash recovery
(:mod:`.reconcile`, run by :mod:`.recovery` and the daemon).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import TYPE_CHECKING

from kanal.engine import autonets, configonly, external, reconcile
from kanal.engine.addressing import Addressing, checked_free, has_version, netlink_routes
from kanal.engine.context import EngineContext
from kanal.engine.drivers import DriverFactory, NetworkDriver, get_driver
from kanal.engine.ipam import DEFAULT_POOLS, DEFAULT_POOLS_V6, AddressAllocator, Pool
from kanal.engine.journal import Intent, Journal
from kanal.engine.locks import KeyedLocks
from kanal.engine.model import (
    Endpoint,
    IPAMConfig,
    Network,
    NetworkSpec,
    PortBinding,
    SandboxRef,
    new_id,
    now,
    validate_name,
)
from kanal.engine.netrecords import NetworkRecords
from kanal.engine.ports import PortAllocator
from kanal.engine.remoteipam import RemoteIpam
from kanal.engine.sandboxnet import EndpointOptions, new_endpoint
from kanal.engine.sysctls import SysctlLedger
from kanal.errors import Conflict, Forbidden, InvalidConfig, KanalError, NotFound, best_effort
from kanal.store import Delete, Put, Store

if TYPE_CHECKING:
    from kanal.engine.cluster import Cluster

__all__ = ["Controller", "NetworkSpec", "SandboxRef"]

log = logging.getLogger("kanal.engine")

Listener = Callable[[str, Network, Endpoint], None]


class Controller:
    """Networks and endpoints of one host.

    Args:
        store: the state store.
        ctx: paths and the CNI runtime.
        pools / pools_v6: default address pools for networks without --subnet.
        host_routes: the host's route destinations (CIDR strings), to keep new
            networks off them; default: read with netlink.
        default_bridge: options of the built-in ``bridge`` network.
        drivers: makes the driver of a name (the daemon's: the built-in drivers and
            remote plugins; a unit test's: a fake).
    """

    def __init__(
        self,
        store: Store,
        ctx: EngineContext,
        *,
        pools: Sequence[Pool] = DEFAULT_POOLS,
        pools_v6: Sequence[Pool] = DEFAULT_POOLS_V6,
        host_routes: Callable[[], Iterable[str]] | None = None,
        default_bridge: str = "kanal0",
        default_subnet: str = "",
        drivers: DriverFactory = get_driver,
    ) -> None:
        self.store = store
        self.ctx = ctx
        self.make_driver = drivers
        self.default_bridge = default_bridge
        self.default_subnet = default_subnet
        self.ipam = AddressAllocator(store)
        self.records = NetworkRecords(store, ctx)
        self.addressing = Addressing(self.ipam, ctx, pools, pools_v6, host_routes or netlink_routes)
        self.ports = PortAllocator(store)
        self.journal = Journal(store)
        #: per endpoint id: connect, disconnect and the repairer never overlap on one
        self.ep_locks = KeyedLocks()
        if ctx.sysctls is None:
            ctx.sysctls = SysctlLedger(store)
        #: network create/delete (and reconcile); endpoint operations don't take it
        self.lock = threading.RLock()
        self._drivers: dict[str, NetworkDriver] = {}
        self.listeners: list[Listener] = []

    # --- helpers -----------------------------------------------------------------

    def driver(self, name: str) -> NetworkDriver:
        d = self._drivers.get(name)
        if d is None:
            d = self._drivers[name] = self.make_driver(name, self.ctx)
        return d

    def emit(self, event: str, net: Network, ep: Endpoint) -> None:
        """Tell the listeners (DNS, events) about an endpoint change."""
        for fn in self.listeners:
            try:
                fn(event, net, ep)
            except Exception:  # a listener must not break the operation
                log.exception("listener failed on %s", event)

    @property
    def cluster(self) -> Cluster | None:
        c: Cluster | None = self.ctx.cluster
        return c

    def networks(self) -> list[Network]:
        """This host's networks, then the cluster's global ones (when in a cluster)."""
        return self.records.all()

    def one_listing(self) -> AbstractContextManager[None]:
        """A block in which the cluster's global networks are read from etcd once
        (one API request: kanal.engine.cluster.Cluster.one_listing)."""
        if self.cluster is None:
            return nullcontext()
        return self.cluster.one_listing()

    def local_networks(self) -> list[Network]:
        """This host's networks only (never asks the cluster)."""
        return self.records.local()

    def get_network(self, ref: str) -> Network:
        """By full id, name, or unique id prefix (docker's lookup order).

        Raises NotFound, Conflict (an ambiguous prefix)."""
        return self.records.get(ref)

    def endpoints(self, net_id: str | None = None) -> list[Endpoint]:
        prefix = f"endpoints/{net_id}/" if net_id else "endpoints/"
        return [Endpoint.from_json(e.value) for e in self.store.list(prefix)]

    def sandbox_endpoints(self, sandbox_id: str) -> list[Endpoint]:
        """Through the index ``by-sandbox/<sandbox>/<endpoint>`` → network id: O(its own)."""
        out = []
        for e in self.store.list(f"by-sandbox/{sandbox_id}/"):
            got = self.store.get(f"endpoints/{e.value.decode()}/{e.key.rsplit('/', 1)[1]}")
            if got is not None:
                out.append(Endpoint.from_json(got.value))
        return out

    # --- networks ----------------------------------------------------------------

    def ensure_builtin(self) -> None:
        """The networks every docker host has: ``bridge`` (default), ``host``, ``none``
        (:mod:`.autonets`)."""
        autonets.ensure_builtin(self)

    def sync_cni_networks(self) -> list[str]:
        """One ``cni`` network per list in the CNI config dir (:mod:`.autonets`)."""
        return autonets.sync_cni_networks(self)

    def create_network(
        self, spec: NetworkSpec, *, net_id: str = "", builtin: bool = False
    ) -> Network:
        """docker network create. Raises InvalidConfig/Conflict; nothing changes then.

        ``net_id`` fixes the id (a network dockerd created through kanal's plugin
        keeps dockerd's id); default: a new random one. ``builtin``: one of docker's
        pre-defined networks (never removed).
        """
        with self.lock:
            return self._create(spec, builtin=builtin, net_id=net_id)

    def _create(self, spec: NetworkSpec, *, builtin: bool, net_id: str = "") -> Network:
        validate_name(spec.name)
        others = self.networks()
        spec, made = configonly.before_create(self, spec, others, net_id)
        if made is not None:  # a configuration-only network: nothing more to make
            return made
        driver_name = "null" if spec.driver == "none" else spec.driver
        driver = self.driver(driver_name)
        if any(n.name == spec.name for n in others):
            raise Conflict(f"network with name {spec.name} already exists")
        remote_ipam = None
        if spec.ipam_driver not in ("default", ""):
            if not driver.needs_ipam:
                raise InvalidConfig(f"the {spec.driver} driver takes no IPAM driver")
            if not self.ctx.plugins.available(spec.ipam_driver):
                raise InvalidConfig(f"IPAM driver {spec.ipam_driver!r} not found")
            remote_ipam = RemoteIpam(spec.ipam_driver, self.ctx)
        if not spec.enable_ipv4 and not spec.enable_ipv6 and driver.needs_ipam:
            raise InvalidConfig("IPv4 or IPv6 must be enabled")
        if net_id and self.store.get(f"networks/{net_id}") is not None:
            raise Conflict(f"network with id {net_id} already exists")
        net = Network(
            id=net_id or new_id(),
            name=spec.name,
            driver=driver_name,
            created=now(),
            internal=spec.internal,
            attachable=spec.attachable,
            enable_ipv4=spec.enable_ipv4,
            enable_ipv6=spec.enable_ipv6,
            ipam_driver=spec.ipam_driver if remote_ipam else "default",
            ipam_options=dict(spec.ipam_options),
            options=dict(spec.options),
            labels=dict(spec.labels),
            builtin=builtin,
        )
        cfgs: list[IPAMConfig] = []
        if remote_ipam is not None:
            cfgs = checked_free(spec.ipam, others)
        elif driver.needs_ipam:
            net.ipam = self.addressing.plan_subnets(
                spec.name, spec.ipam, spec.enable_ipv4, spec.enable_ipv6, others
            )
        elif spec.ipam:
            raise InvalidConfig(f"the {spec.driver} driver takes no subnets")
        driver.prepare(net)
        configonly.after_prepare(spec, net)
        bridge = net.driver_state.get("bridge")
        sharing = [n for n in others if bridge and n.driver_state.get("bridge") == bridge]
        # An operator's OVS bridge carries several networks (seed 002: two subnets on
        # br1); a bridge kanal makes belongs to one network.
        if sharing and not all(n.driver_state.get("shared_bridge") for n in [net, *sharing]):
            raise Conflict(f"bridge {bridge} is already used by another network")
        with (
            self.journal.intent("network-create", network=net.id, driver=driver_name) as it,
            ExitStack() as undo,
        ):
            if remote_ipam is not None:
                net.ipam, net.ipam_state = remote_ipam.request_pools(
                    cfgs, spec.enable_ipv4, spec.enable_ipv6, dict(spec.ipam_options)
                )
                undo.callback(remote_ipam.release_pools, net.ipam_state)
                self.journal.update(it, ipam_driver=spec.ipam_driver, ipam_state=net.ipam_state)
            driver.reserve(net)
            # Undoes what reserve took (a VNI) and what create made: drivers remove
            # only what carries this network's mark, never a namesake.
            undo.callback(best_effort, driver.delete_network, net)
            self.records.save(net, new=True)
            undo.callback(self.records.forget, net)
            driver.create_network(net)
            # What the driver learnt while creating (a remote plugin's "created"),
            # stored with the intent's end where both live in the same store.
            if net.scope == "global":
                self.records.save(net)
                self.journal.end(it)
            else:
                self.journal.end(it, [Put(f"networks/{net.id}", net.to_json())])
            undo.pop_all()
        log.info("created network %s (%s)", net.name, net.id[:12])
        return net

    def delete_network(self, ref: str) -> Network:
        """docker network rm. Raises NotFound, Forbidden (built-in), Conflict (endpoints,
        or a configuration-only network others were made from)."""
        with self.lock:
            net = self.get_network(ref)
            if net.builtin:
                raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
            if net.config_only:
                configonly.check_unused(net, self.networks())
                self.records.forget(net)
                return net
            busy = len(self.endpoints(net.id))
            if not busy and net.scope == "global" and self.cluster is not None:
                busy = self.cluster.endpoint_count(net.id)  # on other hosts
            if busy:
                raise Conflict(
                    f"error while removing network: network {net.name} id {net.id} has "
                    "active endpoints"
                )
            self.remove_network(net)
            return net

    def remove_network(self, net: Network) -> None:
        """Remove a network now (kernel, pools, records); the checks are the caller's."""
        if net.config_only:  # nothing but its record
            self.records.forget(net)
            return
        # Marked first: a crash from here on is finished by reconcile().
        net.driver_state["deleting"] = True
        self.records.save(net)
        self.driver(net.driver).delete_network(net)
        if net.ipam_state:
            RemoteIpam(net.ipam_driver, self.ctx).release_pools(net.ipam_state)
        self.ipam.drop_network(net.id)
        self.records.forget(net)
        log.info("removed network %s (%s)", net.name, net.id[:12])

    def prune(self, keep: Callable[[Network], bool] = lambda n: False) -> list[Network]:
        """Remove every user network without endpoints (minus those ``keep`` says)."""
        removed = []
        with self.lock:
            nets = self.networks()
            sources = {n.config_from for n in nets}  # config-only networks still used
            for net in nets:
                if net.builtin or keep(net) or self.endpoints(net.id) or net.name in sources:
                    continue
                if net.scope == "global" and self.cluster and self.cluster.endpoint_count(net.id):
                    continue  # in use on another host
                self.remove_network(net)
                removed.append(net)
        return removed

    # --- endpoints ---------------------------------------------------------------

    def connect(
        self,
        ref: str,
        sandbox: SandboxRef,
        *,
        ip: str = "",
        ip6: str = "",
        aliases: Sequence[str] = (),
        ports: Sequence[PortBinding] = (),
        opts: EndpointOptions | None = None,
    ) -> Endpoint:
        """Join the sandbox to the network: addresses, interface, published ports,
        and docker's other endpoint options (``opts``: MAC, links, link-local
        addresses, driver options; :mod:`.sandboxnet`).

        Raises:
            NotFound: no such network. Conflict: already connected, address or
            port taken. InvalidConfig: a static IP without a user subnet, etc.
        """
        net = self.get_network(ref)
        if net.driver_state.get("deleting"):
            raise NotFound(f"network {ref} not found")
        configonly.check_connectable(net)
        driver = self.driver(net.driver)
        mine = self.sandbox_endpoints(sandbox.id)
        ep = new_endpoint(net, driver, sandbox, mine, bool(ip or ip6), aliases)
        opts = opts or EndpointOptions()
        opts.apply(ep, net.name, driver.has_interface)
        if ports and (not driver.has_interface or net.internal or net.scope == "global"):
            ports = ()  # docker ignores -p on host/none, internal and overlay networks
        key = f"endpoints/{net.id}/{ep.id}"
        with (
            self.ep_locks.hold(ep.id),
            self.journal.intent(
                "connect", network=net.id, endpoint=ep.id, sandbox=sandbox.id
            ) as it,
            ExitStack() as undo,
        ):
            if driver.needs_ipam:
                if net.enable_ipv4 and has_version(net, 4):
                    ep.ipv4 = self.addressing.allocate(net, 4, ep.id, ip)
                    undo.callback(self.addressing.free, net, ep.ipv4, ep.id)
                elif ip:
                    raise InvalidConfig(f"network {net.name} has no IPv4 subnet for {ip}")
                if net.enable_ipv6 and has_version(net, 6):
                    ep.ipv6 = self.addressing.allocate(net, 6, ep.id, ip6)
                    undo.callback(self.addressing.free, net, ep.ipv6, ep.id)
                elif ip6:
                    raise InvalidConfig(f"network {net.name} has no IPv6 subnet for {ip6}")
                if net.scope == "global" or net.ipam_state:
                    # Not findable by owner in this store: recovery must know them.
                    self.journal.update(it, addresses=[a for a in (ep.ipv4, ep.ipv6) if a])
            if ports:
                ep.ports = self.ports.reserve(ep.id, ports)
                undo.callback(self.ports.release, ep.id, list(ep.ports))
            idx = f"by-sandbox/{sandbox.id}/{ep.id}"
            self.store.txn([Put(key, ep.to_json(), 0), Put(idx, net.id.encode())])
            undo.callback(self.store.txn, [Delete(key), Delete(idx)])
            driver.join(net, ep)
            undo.callback(best_effort, driver.leave, net, ep)
            opts.joined(ep, net.driver)
            self.journal.end(it, [Put(key, ep.to_json())])
            undo.pop_all()
        self.emit("connect", net, ep)
        return ep

    def add_external_endpoint(
        self,
        ref: str,
        endpoint_id: str,
        *,
        ipv4: str = "",
        ipv6: str = "",
        mac: str = "",
        name: str = "",
    ) -> Endpoint:
        """Record an endpoint another runtime places (:mod:`.external`)."""
        return external.add_external_endpoint(
            self, ref, endpoint_id, ipv4=ipv4, ipv6=ipv6, mac=mac, name=name
        )

    def get_endpoint(self, net_id: str, endpoint_id: str) -> Endpoint:
        """Raises NotFound."""
        e = self.store.get(f"endpoints/{net_id}/{endpoint_id}")
        if e is None:
            raise NotFound(f"endpoint {endpoint_id} not found in network {net_id}")
        return Endpoint.from_json(e.value)

    def save_endpoint(self, ep: Endpoint, *, event: str = "") -> None:
        """Store an endpoint's changed fields (and tell the listeners ``event``)."""
        self.store.put(f"endpoints/{ep.network_id}/{ep.id}", ep.to_json())
        if event:
            self.emit(event, self.get_network(ep.network_id), ep)

    def remove_external_endpoint(self, net_id: str, endpoint_id: str) -> Endpoint | None:
        """Forget an external endpoint; idempotent (:mod:`.external`)."""
        return external.remove_external_endpoint(self, net_id, endpoint_id)

    def disconnect(self, ref: str, sandbox_id: str, *, force: bool = False) -> Endpoint:
        """Leave the network; idempotent in the kernel. Raises NotFound if not connected."""
        net = self.get_network(ref)
        eps = [ep for ep in self.endpoints(net.id) if ep.sandbox_id == sandbox_id]
        if not eps:
            raise NotFound(f"container {sandbox_id[:12]} is not connected to network {net.name}")
        with self.ep_locks.hold(eps[0].id):
            got = self.store.get(f"endpoints/{net.id}/{eps[0].id}")  # as it is now
            if got is None:  # a concurrent disconnect was first
                raise NotFound(
                    f"container {sandbox_id[:12]} is not connected to network {net.name}"
                )
            ep = Endpoint.from_json(got.value)
            self._disconnect(net, ep, force)
        self.emit("disconnect", net, ep)
        return ep

    def _disconnect(self, net: Network, ep: Endpoint, force: bool) -> None:
        with self.journal.intent(
            "disconnect", network=net.id, endpoint=ep.id, sandbox=ep.sandbox_id
        ) as it:
            try:
                self.driver(net.driver).leave(net, ep)
            except KanalError:
                if not force:
                    raise
                log.warning(
                    "forced disconnect of %s from %s despite a teardown error", ep.id, net.name
                )
            self.release_endpoint(net, ep, it)
        if not self.store.any(f"endpoints/{net.id}/"):
            best_effort(self.driver(net.driver).idle, net)

    def release_endpoint(self, net: Network, ep: Endpoint, it: Intent | None = None) -> None:
        """Free the endpoint's addresses and ports and drop its records (with the
        end of intent ``it``, when one is given)."""
        for cidr in (ep.ipv4, ep.ipv6):
            if cidr:
                self.addressing.free(net, cidr, ep.id)
        if ep.ports:
            self.ports.release(ep.id, ep.ports)
        ops: list[Put | Delete] = [
            Delete(f"endpoints/{net.id}/{ep.id}"),
            Delete(f"by-sandbox/{ep.sandbox_id}/{ep.id}"),
        ]
        if it is not None:
            self.journal.end(it, ops)
        else:
            self.store.txn(ops)

    def forget_endpoint_records(self, net_id: str, ep_id: str, sandbox_id: str) -> None:
        """Drop an endpoint's records (and its by-sandbox index entry)."""
        self.store.txn(
            [Delete(f"endpoints/{net_id}/{ep_id}"), Delete(f"by-sandbox/{sandbox_id}/{ep_id}")]
        )

    def disconnect_all(self, sandbox_id: str) -> None:
        """Every endpoint of a sandbox that is going away; best-effort."""
        for ep in self.sandbox_endpoints(sandbox_id):
            try:
                self.disconnect(ep.network_id, sandbox_id, force=True)
            except KanalError:
                log.exception("disconnecting %s", ep.id)

    def reconcile(self, sandbox_alive: Callable[[Endpoint], bool] | None = None) -> dict[str, int]:
        """Bring the kernel back to the store after a restart or crash; counts of what
        it did (:func:`kanal.engine.reconcile.reconcile`)."""
        return reconcile.reconcile(self, sandbox_alive)
