"""The network controller: owns networks and endpoints, their addresses and ports.

State is in the store (``networks/<id>``, ``endpoints/<network id>/<endpoint id>``,
``ipam/...``, ``ports/...``); the kernel is the drivers' business. Every change is
written to the store before the kernel is touched and undone if the kernel step
fails, so :meth:`Controller.reconcile` (run at start) can always bring the kernel
back to the store: recreate what is missing, finish interrupted deletions, drop
endpoints whose sandbox is gone.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from kanal.engine.context import EngineContext
from kanal.engine.drivers import NetworkDriver, get_driver
from kanal.engine.ipam import (
    DEFAULT_POOLS,
    DEFAULT_POOLS_V6,
    AddressAllocator,
    Pool,
    choose_subnet,
    require_free,
    validate_ipam_config,
)
from kanal.engine.journal import Intent, Journal
from kanal.engine.locks import KeyedLocks
from kanal.engine.model import (
    Endpoint,
    IPAMConfig,
    Network,
    PortBinding,
    new_id,
    now,
    validate_name,
)
from kanal.engine.ports import PortAllocator
from kanal.errors import Conflict, Forbidden, InvalidConfig, KanalError, NotFound, best_effort
from kanal.store import Delete, Put, Store

if TYPE_CHECKING:
    from kanal.engine.cluster import Cluster

__all__ = ["Controller", "NetworkSpec", "SandboxRef"]

log = logging.getLogger("kanal.engine")
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class NetworkSpec:
    """What ``kanal network create`` asks for (docker's flags)."""

    name: str
    driver: str = "bridge"
    ipam: list[IPAMConfig] = field(default_factory=list)
    ipam_driver: str = "default"
    ipam_options: dict[str, str] = field(default_factory=dict)
    enable_ipv4: bool = True
    enable_ipv6: bool = False
    internal: bool = False
    attachable: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SandboxRef:
    """The sandbox an endpoint joins: its id, name (for DNS) and netns path."""

    id: str
    name: str
    netns: str


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
    ) -> None:
        self.store = store
        self.ctx = ctx
        self.pools = list(pools)
        self.pools_v6 = list(pools_v6)
        self.host_routes = host_routes or _netlink_routes
        self.default_bridge = default_bridge
        self.default_subnet = default_subnet
        self.ipam = AddressAllocator(store)
        self.ports = PortAllocator(store)
        self.journal = Journal(store)
        #: per endpoint id: connect, disconnect and the repairer never overlap on one
        self.ep_locks = KeyedLocks()
        if ctx.sysctls is None:
            from kanal.engine.sysctls import SysctlLedger

            ctx.sysctls = SysctlLedger(store)
        self._lock = threading.RLock()  # network create/delete; endpoint ops don't take it
        self._drivers: dict[str, NetworkDriver] = {}
        self.listeners: list[Listener] = []

    # --- helpers -----------------------------------------------------------------

    def driver(self, name: str) -> NetworkDriver:
        d = self._drivers.get(name)
        if d is None:
            d = self._drivers[name] = get_driver(name, self.ctx)
        return d

    def _emit(self, event: str, net: Network, ep: Endpoint) -> None:
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
        local = self._local_networks()
        if self.cluster is None:
            return local
        return local + self.cluster.networks()

    def _local_networks(self) -> list[Network]:
        return [Network.from_json(e.value) for e in self.store.list("networks/")]

    def _save_network(self, net: Network, *, new: bool = False) -> None:
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

    def _forget_network(self, net: Network) -> None:
        if net.scope == "global" and self.cluster is not None:
            self.cluster.remove_network(net)
        else:
            self.store.delete(f"networks/{net.id}")

    def get_network(self, ref: str) -> Network:
        """By full id, name, or unique id prefix (docker's lookup order)."""
        # The common cases without listing every network (nor asking the cluster):
        # a full id of this host's, or a name of this host's that is no full id.
        if ref and "/" not in ref:
            e = self.store.get(f"networks/{ref}")
            if e is not None:
                return Network.from_json(e.value)
        local = self._local_networks()
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
        """The networks every docker host has: ``bridge`` (default), ``host``, ``none``."""
        with self._lock:
            names = {n.name for n in self.networks()}
            if "bridge" not in names:
                ipam = [IPAMConfig(self.default_subnet)] if self.default_subnet else []
                self._create(
                    NetworkSpec(
                        "bridge",
                        "bridge",
                        ipam=ipam,
                        options={
                            "com.docker.network.bridge.name": self.default_bridge,
                            "com.docker.network.bridge.default_bridge": "true",
                        },
                    ),
                    builtin=True,
                )
            for name, driver in (("host", "host"), ("none", "null")):
                if name not in names:
                    self._create(NetworkSpec(name, driver), builtin=True)

    def sync_cni_networks(self) -> list[str]:
        """One ``cni`` network per configuration list in the CNI config directory.

        New lists get a network named like the list (unless that name is taken by
        another network); networks of lists that disappeared are removed when no
        endpoint uses them. Returns the names created. A broken file is skipped.
        """
        from kanal.runtime.config import list_networks

        errors: list[KanalError] = []
        try:
            lists = list_networks(self.ctx.cni_conf_dir, errors)
        except KanalError as e:
            log.warning("cannot read CNI configs: %s", e)
            return []
        for err in errors:
            log.warning("skipping a CNI config: %s", err)
        made = []
        with self._lock:
            nets = self.networks()
            have = {n.driver_state.get("network") for n in nets if n.driver == "cni"}
            names = {n.name for n in nets}
            for cl in lists:
                if cl.name in have or cl.name in names:
                    continue
                try:
                    self._create(
                        NetworkSpec(cl.name, "cni", labels={"kanal.cni": "auto"}), builtin=False
                    )
                    made.append(cl.name)
                except KanalError as e:
                    log.warning("CNI network %s: %s", cl.name, e)
            present = {cl.name for cl in lists}
            for n in nets:
                if (
                    n.driver == "cni"
                    and n.labels.get("kanal.cni") == "auto"
                    and n.driver_state.get("network") not in present
                    and not self.endpoints(n.id)
                ):
                    self._delete(n)
        return made

    def create_network(self, spec: NetworkSpec, *, net_id: str = "") -> Network:
        """docker network create. Raises InvalidConfig/Conflict; nothing changes then.

        ``net_id`` fixes the id (a network dockerd created through kanal's plugin
        keeps dockerd's id); default: a new random one.
        """
        with self._lock:
            return self._create(spec, builtin=False, net_id=net_id)

    def _create(self, spec: NetworkSpec, *, builtin: bool, net_id: str = "") -> Network:
        validate_name(spec.name)
        driver_name = "null" if spec.driver == "none" else spec.driver
        driver = self.driver(driver_name)
        others = self.networks()
        if any(n.name == spec.name for n in others):
            raise Conflict(f"network with name {spec.name} already exists")
        remote_ipam = None
        if spec.ipam_driver not in ("default", ""):
            from kanal.dockerplugin.remote import RemoteIpam

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
            cfgs = [validate_ipam_config(c) for c in spec.ipam]
            for c in cfgs:
                require_free(ipaddress.ip_network(c.subnet), self._taken(others))
        elif driver.needs_ipam:
            net.ipam = self._plan_subnets(spec, others)
        elif spec.ipam:
            raise InvalidConfig(f"the {spec.driver} driver takes no subnets")
        driver.prepare(net)
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
            self._save_network(net, new=True)
            undo.callback(self._forget_network, net)
            driver.create_network(net)
            # What the driver learnt while creating (a remote plugin's "created"),
            # stored with the intent's end where both live in the same store.
            if net.scope == "global":
                self._save_network(net)
                self.journal.end(it)
            else:
                self.journal.end(it, [Put(f"networks/{net.id}", net.to_json())])
            undo.pop_all()
        log.info("created network %s (%s)", net.name, net.id[:12])
        return net

    @staticmethod
    def _taken(others: list[Network]) -> list[tuple[str, Net]]:
        return [(n.name, ipaddress.ip_network(c.subnet)) for n in others for c in n.ipam]

    def _plan_subnets(self, spec: NetworkSpec, others: list[Network]) -> list[IPAMConfig]:
        taken = self._taken(others)
        cfgs = [validate_ipam_config(c) for c in spec.ipam]
        seen: list[tuple[str, Net]] = []
        for c in cfgs:
            sub = ipaddress.ip_network(c.subnet)
            require_free(sub, taken + seen)
            seen.append((spec.name, sub))
        versions = {ipaddress.ip_network(c.subnet).version for c in cfgs}
        if 6 in versions and not spec.enable_ipv6:
            raise InvalidConfig("an IPv6 subnet requires --ipv6")
        if 4 in versions and not spec.enable_ipv4:
            raise InvalidConfig("an IPv4 subnet requires IPv4 to be enabled")
        avoid = [n for _, n in taken] + _host_networks(self.host_routes)
        if spec.enable_ipv4 and 4 not in versions:
            cfgs.append(validate_ipam_config(IPAMConfig(str(choose_subnet(self.pools, avoid, 4)))))
        if spec.enable_ipv6 and 6 not in versions:
            sub6 = choose_subnet(self.pools_v6, avoid, 6)
            cfgs.append(validate_ipam_config(IPAMConfig(str(sub6))))
        return cfgs

    def delete_network(self, ref: str) -> Network:
        """docker network rm. Raises NotFound, Forbidden (built-in), Conflict (endpoints)."""
        with self._lock:
            net = self.get_network(ref)
            if net.builtin:
                raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
            busy = len(self.endpoints(net.id))
            if not busy and net.scope == "global" and self.cluster is not None:
                busy = self.cluster.endpoint_count(net.id)  # on other hosts
            if busy:
                raise Conflict(
                    f"error while removing network: network {net.name} id {net.id} has "
                    "active endpoints"
                )
            self._delete(net)
            return net

    def _delete(self, net: Network) -> None:
        # Marked first: a crash from here on is finished by reconcile().
        net.driver_state["deleting"] = True
        self._save_network(net)
        self.driver(net.driver).delete_network(net)
        if net.ipam_state:
            from kanal.dockerplugin.remote import RemoteIpam

            RemoteIpam(net.ipam_driver, self.ctx).release_pools(net.ipam_state)
        self.ipam.drop_network(net.id)
        self._forget_network(net)
        log.info("removed network %s (%s)", net.name, net.id[:12])

    def prune(self, keep: Callable[[Network], bool] = lambda n: False) -> list[Network]:
        """Remove every user network without endpoints (minus those ``keep`` says)."""
        removed = []
        with self._lock:
            for net in self.networks():
                if net.builtin or keep(net) or self.endpoints(net.id):
                    continue
                if net.scope == "global" and self.cluster and self.cluster.endpoint_count(net.id):
                    continue  # in use on another host
                self._delete(net)
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
    ) -> Endpoint:
        """Join the sandbox to the network: addresses, interface, published ports.

        Raises:
            NotFound: no such network. Conflict: already connected, address or
            port taken. InvalidConfig: a static IP without a user subnet, etc.
        """
        net = self.get_network(ref)
        if net.driver_state.get("deleting"):
            raise NotFound(f"network {ref} not found")
        driver = self.driver(net.driver)
        mine = self.sandbox_endpoints(sandbox.id)
        if any(ep.network_id == net.id for ep in mine):
            raise Conflict(
                f"endpoint with name {sandbox.name} already exists in network {net.name}"
            )
        for alias in aliases:
            validate_name(alias, "alias")
        if (ip or ip6) and (net.builtin or not driver.needs_ipam):
            raise InvalidConfig(
                "user specified IP address is supported only when connecting to networks "
                "with user configured subnets"
            )
        if ports and (not driver.has_interface or net.internal or net.scope == "global"):
            ports = ()  # docker ignores -p on host/none, internal and overlay networks
        prefix = net.driver_state.get("iface_prefix", "eth")
        ifname = ""
        if driver.has_interface:
            used = {ep.ifname for ep in mine}
            ifname = next(
                f"{prefix}{i}" for i in range(len(used) + 1) if f"{prefix}{i}" not in used
            )
        ep = Endpoint(
            id=new_id(),
            network_id=net.id,
            name=sandbox.name,
            sandbox_id=sandbox.id,
            netns=sandbox.netns,
            ifname=ifname,
            static_ip=bool(ip or ip6),
            default_gateway=not net.internal
            and net.scope != "global"  # an overlay has no way out (docker's neither)
            and not any(e.default_gateway for e in mine),
            aliases=list(aliases),
            created=now(),
        )
        key = f"endpoints/{net.id}/{ep.id}"
        with (
            self.ep_locks.hold(ep.id),
            self.journal.intent(
                "connect", network=net.id, endpoint=ep.id, sandbox=sandbox.id
            ) as it,
            ExitStack() as undo,
        ):
            if driver.needs_ipam:
                if net.enable_ipv4 and _has(net, 4):
                    ep.ipv4 = self._allocate(net, 4, ep.id, ip)
                    undo.callback(self._free, net, ep.ipv4, ep.id)
                elif ip:
                    raise InvalidConfig(f"network {net.name} has no IPv4 subnet for {ip}")
                if net.enable_ipv6 and _has(net, 6):
                    ep.ipv6 = self._allocate(net, 6, ep.id, ip6)
                    undo.callback(self._free, net, ep.ipv6, ep.id)
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
            self.journal.end(it, [Put(key, ep.to_json())])
            undo.pop_all()
        self._emit("connect", net, ep)
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
        """Record an endpoint whose interface another runtime places (dockerd via
        kanal's plugin): its addresses (CIDRs, chosen by that runtime's IPAM) are
        reserved here so kanal never hands them out twice. Idempotent for a retried
        call with the same id. The driver's kernel work is the caller's.

        Raises:
            NotFound: no such network. Conflict: an address is taken.
            InvalidConfig: an address outside the network's subnets.
        """
        net = self.get_network(ref)
        key = f"endpoints/{net.id}/{endpoint_id}"
        old = self.store.get(key)
        if old is not None:
            return Endpoint.from_json(old.value)
        ep = Endpoint(
            id=endpoint_id,
            network_id=net.id,
            name=name or endpoint_id[:12],
            sandbox_id=f"ext-{endpoint_id[:24]}",
            mac=mac,
            static_ip=True,
            created=now(),
            driver_state={"external": True},
        )
        with ExitStack() as undo:
            if ipv4:
                ep.ipv4 = self._allocate(net, 4, ep.id, ipv4.split("/")[0])
                undo.callback(self._free, net, ep.ipv4, ep.id)
            if ipv6:
                ep.ipv6 = self._allocate(net, 6, ep.id, ipv6.split("/")[0])
                undo.callback(self._free, net, ep.ipv6, ep.id)
            idx = f"by-sandbox/{ep.sandbox_id}/{ep.id}"
            self.store.txn([Put(key, ep.to_json(), 0), Put(idx, net.id.encode())])
            undo.pop_all()
        return ep

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
            self._emit(event, self.get_network(ep.network_id), ep)

    def remove_external_endpoint(self, net_id: str, endpoint_id: str) -> Endpoint | None:
        """Forget an external endpoint: addresses, ports and records; idempotent."""
        try:
            ep = self.get_endpoint(net_id, endpoint_id)
            net = self.get_network(net_id)
        except NotFound:
            return None
        self._release(net, ep)
        return ep

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
        self._emit("disconnect", net, ep)
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
            self._release(net, ep, it)
        if not self.store.any(f"endpoints/{net.id}/"):
            best_effort(self.driver(net.driver).idle, net)

    def _allocate(self, net: Network, version: int, ep_id: str, want: str) -> str:
        """An address (CIDR) for the endpoint, from kanal's IPAM or the network's plugin."""
        if net.scope == "global" and self.cluster is not None:
            g = self.cluster.ipam(net, version)
            got = g.allocate(ep_id, want or None)
            return f"{got.ip}/{g.subnet.prefixlen}"
        if net.ipam_state:
            from kanal.dockerplugin.remote import RemoteIpam

            cidr, _pool = RemoteIpam(net.ipam_driver, self.ctx).request_address(
                net.ipam_state, version, want
            )
            return cidr
        a, sub, _gw = self.ipam.allocate(net, version, ep_id, want)
        return f"{a}/{sub.prefixlen}"

    def _free(self, net: Network, cidr: str, ep_id: str) -> None:
        ip = cidr.split("/")[0]
        if net.scope == "global" and self.cluster is not None:
            version = ipaddress.ip_address(ip).version
            self.cluster.ipam(net, version).release(ip, ep_id)
            return
        if net.ipam_state:
            from kanal.dockerplugin.remote import RemoteIpam

            remote = RemoteIpam(net.ipam_driver, self.ctx)
            for rec in net.ipam_state.get("pools", []):
                if ipaddress.ip_address(ip) in ipaddress.ip_network(rec["pool"]):
                    best_effort(remote.release_address, rec["id"], ip)
            return
        self.ipam.release(net.id, ip, ep_id)

    def _release(self, net: Network, ep: Endpoint, it: Intent | None = None) -> None:
        """Free the endpoint's addresses and ports and drop its records (with the
        end of intent ``it``, when one is given)."""
        for cidr in (ep.ipv4, ep.ipv6):
            if cidr:
                self._free(net, cidr, ep.id)
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

    def purge_endpoint(
        self, net_id: str, ep_id: str, sandbox_id: str, addresses: Sequence[str] = ()
    ) -> None:
        """Recovery of an interrupted connect or disconnect: the endpoint goes entirely
        — kernel side, addresses, ports, records — whatever step it had reached.
        ``addresses``: those held where no owner scan finds them (cluster, remote
        IPAM). Idempotent."""
        try:
            net: Network | None = self.get_network(net_id)
        except NotFound:
            net = None
        e = self.store.get(f"endpoints/{net_id}/{ep_id}")
        ep = Endpoint.from_json(e.value) if e is not None else None
        if net is not None:
            if ep is not None:
                best_effort(self.driver(net.driver).leave, net, ep)
            held = {a for a in (*addresses, *((ep.ipv4, ep.ipv6) if ep else ())) if a}
            for cidr in held:
                best_effort(self._free, net, cidr, ep_id)
            for ip, owner in self.ipam.in_use(net_id).items():
                if owner == ep_id:
                    self.ipam.release(net_id, ip, ep_id)
        self.ports.release_owner(ep_id)
        self.store.txn(
            [Delete(f"endpoints/{net_id}/{ep_id}"), Delete(f"by-sandbox/{sandbox_id}/{ep_id}")]
        )

    def undo_network_create(self, it: Intent) -> None:
        """Recovery of an interrupted ``network create``: whatever it made goes (the
        driver removes only what carries the network's mark). Idempotent."""
        net_id = str(it["network"])
        try:
            net = self.get_network(net_id)
        except NotFound:
            net = None
        with self._lock:
            if net is not None and net.id == net_id:
                if net.scope == "global" and self.cluster and self.cluster.endpoint_count(net_id):
                    return  # stored and in use elsewhere: the create did complete
                for ep in self.endpoints(net.id):
                    best_effort(self.driver(net.driver).leave, net, ep)
                    self._release(net, ep)
                self._delete(net)
                return
            # Never stored: only what the steps before could hold.
            if it.fields.get("ipam_state"):
                from kanal.dockerplugin.remote import RemoteIpam

                remote = RemoteIpam(str(it["ipam_driver"]), self.ctx)
                best_effort(remote.release_pools, it["ipam_state"])
            if it["driver"] == "overlay" and self.cluster is not None:
                self.cluster.release_vnis_of(net_id)

    def disconnect_all(self, sandbox_id: str) -> None:
        """Every endpoint of a sandbox that is going away; best-effort."""
        for ep in self.sandbox_endpoints(sandbox_id):
            try:
                self.disconnect(ep.network_id, sandbox_id, force=True)
            except KanalError:
                log.exception("disconnecting %s", ep.id)

    def drop_lost_addresses(self) -> list[Endpoint]:
        """Overlay endpoints of this host whose address the cluster freed while the
        host was cut off (past the grace period): they leave their network, since
        the address may be someone else's now. Returns them; raises Unavailable."""
        cluster = self.cluster
        if cluster is None:
            return []
        dropped = []
        for net in self.networks():
            if net.scope != "global":
                continue
            for ep in self.endpoints(net.id):
                lost = [
                    c
                    for c in (ep.ipv4, ep.ipv6)
                    if c
                    and not cluster.ipam(net, ipaddress.ip_interface(c).version).holds(
                        c.split("/")[0], ep.id
                    )
                ]
                if not lost:
                    continue
                log.warning(
                    "%s lost %s on %s while this host was cut off: disconnected",
                    ep.name,
                    ", ".join(lost),
                    net.name,
                )
                self._emit("lost", net, ep)  # the sandbox keeps a note (kanal inspect)
                best_effort(self.driver(net.driver).leave, net, ep)
                self._release(net, ep)
                self._emit("disconnect", net, ep)
                dropped.append(ep)
        return dropped

    # --- restart -----------------------------------------------------------------

    def reconcile(self, sandbox_alive: Callable[[Endpoint], bool] | None = None) -> dict[str, int]:
        """Bring the kernel back to the store after a restart or crash.

        Networks: interrupted deletions are finished, every other network's kernel
        objects re-created (idempotent). Endpoints: those whose sandbox is gone
        (``sandbox_alive`` false; default: its netns path no longer exists) are
        removed with their addresses and ports; those whose kernel side is missing
        are joined again with the same addresses. Returns counts of what it did.
        """
        alive = sandbox_alive or (lambda ep: bool(ep.netns) and os.path.exists(ep.netns))
        counts = {"networks": 0, "deleted": 0, "rejoined": 0, "dropped": 0}
        with self._lock:
            self.ipam.forget_cache()
            for net in self.networks():
                driver = self.driver(net.driver)
                if net.driver_state.get("deleting"):
                    for ep in self.endpoints(net.id):
                        best_effort(driver.leave, net, ep)
                        self._release(net, ep)
                    self._delete(net)
                    counts["deleted"] += 1
                    continue
                driver.create_network(net)
                counts["networks"] += 1
                for ep in self.endpoints(net.id):
                    if ep.driver_state.get("external"):
                        continue  # its runtime (dockerd) owns the sandbox side
                    if not alive(ep):
                        best_effort(driver.leave, net, ep)
                        self._release(net, ep)
                        counts["dropped"] += 1
                    elif not driver.endpoint_ok(net, ep):
                        self._rejoin(net, ep)
                        counts["rejoined"] += 1
        return counts

    def rejoin(self, net_id: str, ep_id: str) -> bool:
        """Make an endpoint's kernel side again (what an outside hand removed), with
        its addresses and ports; False if the endpoint went meanwhile or its sandbox's
        namespace is gone (nothing to join into)."""
        with self.ep_locks.hold(ep_id):
            got = self.store.get(f"endpoints/{net_id}/{ep_id}")
            if got is None:
                return False
            ep = Endpoint.from_json(got.value)
            if not ep.netns or not os.path.exists(ep.netns):
                return False
            self._rejoin(self.get_network(net_id), ep)
            return True

    def _rejoin(self, net: Network, ep: Endpoint) -> None:
        driver = self.driver(net.driver)
        best_effort(driver.leave, net, ep)
        fresh = replace(ep, driver_state={})
        driver.join(net, fresh)
        self.store.put(f"endpoints/{net.id}/{ep.id}", fresh.to_json())


def _has(net: Network, version: int) -> bool:
    return any(ipaddress.ip_network(c.subnet).version == version for c in net.ipam)


def _host_networks(routes: Callable[[], Iterable[str]]) -> list[Net]:
    out: list[Net] = []
    for dst in routes():
        try:
            n = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if n.prefixlen and not n.is_link_local and not n.is_loopback:
            out.append(n)
    return out


def _netlink_routes() -> list[str]:
    from kanal.netlink.handle import Netlink

    with Netlink() as nl:
        return [str(r.dst) for r in nl.routes()]
