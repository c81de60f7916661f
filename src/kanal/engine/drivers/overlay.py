"""The ``overlay`` network driver: one L2 segment across hosts, VXLAN over the underlay.

A global network (scope ``global``, stored in the cluster store, visible on every
host). On a host it exists only while the host has endpoints on it: a bridge
``kov<vni>`` (no address: the overlay is not routed through the host, so
overlay networks are isolated from each other and from the host's own networks)
with the network's VXLAN device (VNI from the cluster, UDP 4789, local = the
host's advertise address, learning off) enslaved. The agent (kanal.cluster)
programs FDB and neighbour entries for the endpoints other hosts publish.
Endpoints are made by kanal's ``bridge`` CNI plugin in-process (static IPAM with
the address from the global allocator, no gateway, the overlay MTU) and then
published under ``overlay/<net>/endpoints/<id>`` with their name and aliases,
which is what other hosts' embedded DNS answers. No default route and no
published ports go through an overlay network (docker's overlay gives those to
a second, local network).

Options: ``com.docker.network.driver.overlay.vxlanid_list`` (docker's: a fixed
VNI), ``com.docker.network.driver.mtu`` (default: underlay MTU - 50),
``com.docker.network.bridge.name`` (the bridge on each host instead of
``kov<vni>``; docker's overlay takes the option too).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from kanal.errors import InvalidConfig, KanalError, TeardownError, Unavailable

if TYPE_CHECKING:
    from kanal.engine.cluster import Cluster
    from kanal.engine.context import EngineContext
    from kanal.engine.model import Endpoint, Network
    from kanal.spec.netconf import ConfList

__all__ = ["OverlayDriver"]

log = logging.getLogger(__name__)

# How long a join waits for its records to come back through this host's watch.
PUBLISH_WAIT = 5.0
P = "com.docker.network."
OPTIONS = {P + "driver.overlay.vxlanid_list", P + "driver.mtu", P + "bridge.name"}


class OverlayDriver:
    name = "overlay"
    needs_ipam = True
    has_interface = True

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self._underlay_mtu: int | None = None  # this host's, read once
        self._locks: dict[str, threading.RLock] = {}
        self._locks_lock = threading.Lock()

    def _local(self, net_id: str) -> threading.RLock:
        """The lock over one network's devices on this host. Endpoint locks do not
        order two endpoints of one network: a leave that found the bridge without
        ports could remove the bridge and the VXLAN device while a join was between
        making them and putting its veth on the bridge."""
        with self._locks_lock:
            return self._locks.setdefault(net_id, threading.RLock())

    @property
    def cluster(self) -> Cluster:
        c: Cluster | None = self.ctx.cluster
        if c is None:
            raise InvalidConfig(
                "overlay networks need a cluster: start kanald with --cluster-store "
                "etcd://HOST:PORT[,...] --advertise-addr IP"
            )
        return c

    # --- network -----------------------------------------------------------------

    def prepare(self, net: Network) -> None:
        self.cluster  # noqa: B018 (raises the clear error when kanald has no cluster)
        for key in net.options:
            if key not in OPTIONS:
                raise InvalidConfig(f"unknown overlay option {key}")
        want = 0
        raw = net.options.get(P + "driver.overlay.vxlanid_list", "")
        if raw:
            try:
                want = int(raw.split(",")[0])
            except ValueError:
                raise InvalidConfig(f"invalid VXLAN id {raw!r}") from None
        mtu = 0
        if net.options.get(P + "driver.mtu"):
            try:
                mtu = int(net.options[P + "driver.mtu"])
            except ValueError:
                raise InvalidConfig(f"invalid MTU {net.options[P + 'driver.mtu']!r}") from None
            if not 68 <= mtu <= 65485:
                raise InvalidConfig(f"invalid MTU {mtu}: want 68-65485")
        bridge = net.options.get(P + "bridge.name", "")
        if bridge:
            # lazy: loaded with the driver table, used only by an overlay network
            from kanal.engine.drivers.bridge import _IFNAME

            if not _IFNAME.match(bridge):
                raise InvalidConfig(f"invalid bridge name {bridge!r}: 1-15 of [A-Za-z0-9_.-]")
        net.scope = "global"
        net.driver_state = {"vni": want, "mtu": mtu, "bridge": bridge}

    def reserve(self, net: Network) -> None:
        vni = self.cluster.allocate_vni(net.id, int(net.driver_state.get("vni") or 0))
        bridge = net.driver_state.get("bridge") or f"kov{vni}"
        net.driver_state.update({"vni": vni, "bridge": bridge})

    def idle(self, net: Network) -> None:
        pass

    def create_network(self, net: Network) -> None:
        # Made on a host by its first endpoint. After a restart, a host that still
        # has the devices hands them back to the agent (which programs them again).
        # lazy: loaded with the driver table, used only by an overlay network
        from kanal.netlink.handle import Netlink

        with Netlink() as nl:
            present = nl.find_link(net.driver_state["bridge"]) is not None
        if present:
            self.cluster.agent.attach(self._link(net))

    def delete_network(self, net: Network) -> None:
        errors: list[Exception] = []
        try:
            with self._local(net.id):
                self._remove_local(net)
        except KanalError as e:
            errors.append(e)
        vni = net.driver_state.get("vni")
        if vni:
            try:
                self.cluster.release_vni(int(vni), net.id)
            except KanalError as e:
                errors.append(e)
        if errors:
            raise TeardownError(f"removing network {net.name}", errors)

    def _mtu(self, net: Network) -> int:
        # lazy: loaded with the driver table, used only by an overlay network
        from kanal.cluster.vxlan import overlay_mtu

        if net.driver_state.get("mtu"):
            return int(net.driver_state["mtu"])
        if self._underlay_mtu is None:
            self._underlay_mtu = _underlay_mtu(self.cluster.advertise_addr)
        return overlay_mtu(self._underlay_mtu)

    def _link(self, net: Network) -> Any:
        # lazy: loaded with the driver table, used only by an overlay network
        from kanal.cluster.vxlan import OverlayLink

        return OverlayLink(
            net.id,
            int(net.driver_state["vni"]),
            net.driver_state["bridge"],
            self.cluster.advertise_addr,
            self._mtu(net),
            owner=net.mark,
        )

    def _remove_local(self, net: Network) -> None:
        # lazy: loaded with the driver table, used only by an overlay network
        from kanal.cluster.vxlan import device_name
        from kanal.netlink.handle import Netlink

        self.cluster.agent.detach(net.id)
        with Netlink() as nl:
            # The agent deletes the VXLAN device it attached; one it does not know of
            # (attached before a restart, or a join that failed midway) goes by its mark.
            vni = int(net.driver_state.get("vni") or 0)
            if vni:
                nl.del_owned_link(device_name(vni), net.mark)
            nl.del_owned_link(net.driver_state.get("bridge") or "-", net.mark)

    # --- endpoints ---------------------------------------------------------------

    def conflist(self, net: Network) -> ConfList:
        # lazy: loaded with the driver table, used only by an overlay network
        from kanal.spec.netconf import parse_conflist

        plugin: dict[str, Any] = {
            "type": "bridge",
            "bridge": net.driver_state["bridge"],
            "isGateway": False,
            "ipMasq": False,
            "hairpinMode": False,
            "mtu": self._mtu(net),
            "ipam": {"type": "static", "routes": []},
        }
        doc = {"cniVersion": "1.0.0", "name": f"kanal-{net.id[:12]}", "plugins": [plugin]}
        return parse_conflist(json.dumps(doc))

    def join(self, net: Network, ep: Endpoint) -> None:
        # lazy: loaded with the driver table, used only by an overlay network
        from kanal.engine.drivers._cni import add, static_runtime
        from kanal.netlink.handle import Netlink

        cluster = self.cluster
        with self._local(net.id):
            with Netlink() as nl:  # made here, marked as this network's (the plugin would not)
                nl.ensure_owned_bridge(
                    net.driver_state["bridge"], owner=net.mark, mtu=self._mtu(net)
                )
            result = add(self.ctx, self.conflist(net), static_runtime(net, ep))
            try:
                for iface in result.interfaces:
                    if iface.sandbox:
                        ep.mac = iface.mac
                    elif iface.name != net.driver_state["bridge"]:
                        ep.driver_state["host_veth"] = iface.name
                cluster.agent.attach(self._link(net))
            except BaseException:
                # Nothing is published yet: only the local side to undo (no etcd
                # round trip while holding the network's lock).
                self._leave_local(net, ep, [])
                raise
        try:
            rev = 0
            for key, cidr in _records(ep):
                rev = cluster.agent.publish(
                    net.id, key, cidr.split("/")[0], ep.mac, name=ep.name, aliases=ep.aliases
                )
            # Return once the records are out where the peers' watches read them (a
            # few ms on a healthy cluster; bounded: they are committed either way).
            if rev and not cluster.agent.wait_seen(rev, PUBLISH_WAIT):
                log.info("endpoint %s: not yet seen by this host's watch", ep.id[:12])
        except BaseException:
            self.leave(net, ep)
            raise

    def leave(self, net: Network, ep: Endpoint) -> None:
        errors: list[Exception] = []
        for key, _cidr in _records(ep):
            try:
                self.cluster.agent.unpublish(net.id, key)
            except Unavailable as e:
                # The record stays in etcd until the cluster is back (peers keep a
                # route to a gone address meanwhile); the local side goes now.
                errors.append(e)
        self._leave_local(net, ep, errors)
        if errors:
            raise TeardownError(f"leaving overlay network {net.name}", errors)

    def _leave_local(self, net: Network, ep: Endpoint, errors: list[Exception]) -> None:
        """The endpoint's interface out; the network's devices too when it was the
        last on this host. Best-effort: failures go to ``errors``."""
        # lazy: loaded with the driver table, used only by an overlay network
        from kanal.engine.drivers._cni import static_runtime

        with self._local(net.id):
            try:
                self.ctx.cni.del_network_list(self.conflist(net), static_runtime(net, ep))
            except KanalError as e:
                errors.append(e)
            if not _has_ports(net.driver_state["bridge"]):
                try:
                    self._remove_local(net)
                except KanalError as e:
                    errors.append(e)

    def endpoint_ok(self, net: Network, ep: Endpoint) -> bool:
        # lazy: loaded with the driver table, used only by an overlay network
        from kanal.netlink.handle import Netlink

        with Netlink() as nl:
            veth = nl.find_link(ep.driver_state.get("host_veth", "") or "-")
            br = nl.find_link(net.driver_state["bridge"])
        return veth is not None and br is not None and veth.master == br.index


def _records(ep: Endpoint) -> list[tuple[str, str]]:
    """The endpoint's records in etcd (one per address: ``<id>``, ``<id>-6``)."""
    return [(k, c) for k, c in ((ep.id, ep.ipv4), (f"{ep.id}-6", ep.ipv6)) if c]


def _has_ports(bridge: str) -> bool:
    """Whether a container's veth is still on the bridge (the VXLAN device aside).
    A veth DEL made inert is taken off the bridge before the background delete
    (docs/overlay.md); one still tagged for that delete is not counted either."""
    # lazy: loaded with the driver table, used only by an overlay network
    from kanal.netlink.handle import Netlink
    from kanal.netlink.reaper import REAP_ALIAS

    with Netlink() as nl:
        br = nl.find_link(bridge)
        if br is None:
            return False
        return any(
            ln.master == br.index and ln.kind != "vxlan" and ln.alias != REAP_ALIAS
            for ln in nl.links()
        )


def _underlay_mtu(addr: str) -> int:
    """The MTU of the link holding the advertise address (1500 if not found)."""
    # lazy: loaded with the driver table, used only by an overlay network
    from kanal.netlink.handle import Netlink

    try:
        with Netlink() as nl:
            for link in nl.links():
                for a in nl.addrs(link.index):
                    if str(a.interface.ip) == addr:
                        return int(link.mtu)
    except KanalError:
        pass
    return 1500
