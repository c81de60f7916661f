"""The ``bridge`` network driver: docker's bridge networks, built from kanal's CNI plugins.

A network is a Linux bridge (``br-<id12>``, or ``com.docker.network.bridge.name``)
with the gateway addresses of its subnets, plus its isolation chain (see
kanal.firewall.nftables.netpolicy). Joining an endpoint runs the configuration list

    bridge (static IPAM with the controller's addresses) → portmap

through the libcni runtime, in this process: the very plugins a CNI runtime
uses, so masquerade, hairpin, published ports, DEL without the netns and GC
behave the same on both faces of kanal. ICC off is the ports' ``isolated``
flag. The result cache is libcni's, under the engine's state directory.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import socket
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from kanal.engine.drivers._cni import add, default_routes, static_runtime
from kanal.errors import InvalidConfig, KanalError, TeardownError
from kanal.firewall import (
    Masquerade,
    Owner,
    PortMapping,
    drop_network_entries,
    drop_subnet_entries,
    get_backend,
    teardown_masquerade,
)
from kanal.firewall.iptables.forward import allow_bridge, disallow_bridge
from kanal.firewall.nftables.netpolicy import add_network_policy, del_network_policy
from kanal.firewall.nftables.portmap import add_portmaps
from kanal.netlink.batch import Batch, raw_socket
from kanal.netlink.bridgeport import Bridge, PortOptions, setup_veth
from kanal.netlink.handle import Netlink
from kanal.netlink.reaper import delete_host_link, wait_for_host
from kanal.netlink.steps import random_mac
from kanal.netlink.sysctl import write_sysctl
from kanal.spec.netconf import parse_conflist

if TYPE_CHECKING:
    from kanal.engine.context import EngineContext
    from kanal.engine.model import Endpoint, Network
    from kanal.runtime.libcni import RuntimeConf
    from kanal.spec.netconf import ConfList

__all__ = ["OPTIONS", "BridgeDriver"]

P = "com.docker.network."
OPTIONS = {
    P + "bridge.name",
    P + "bridge.enable_ip_masquerade",
    P + "bridge.enable_icc",
    P + "bridge.host_binding_ipv4",
    P + "bridge.gateway_mode_ipv4",
    P + "bridge.gateway_mode_ipv6",
    P + "bridge.inhibit_ipv4",
    P + "bridge.default_bridge",
    P + "driver.mtu",
    P + "container_iface_prefix",
}
GATEWAY_MODES = ("nat", "nat-unprotected", "routed", "isolated")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z")
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _bool(opts: dict[str, str], key: str, default: bool) -> bool:
    v = opts.get(key)
    if v is None or v == "":
        return default
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise InvalidConfig(f"invalid value {v!r} for option {key}: want true or false")


class BridgeDriver:
    name = "bridge"
    needs_ipam = True
    has_interface = True

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    # --- network -----------------------------------------------------------------

    def prepare(self, net: Network) -> None:
        opts = net.options
        for key in opts:
            if key.startswith(P) and key not in OPTIONS:
                raise InvalidConfig(f"unknown bridge option {key}")
        br = opts.get(P + "bridge.name") or f"br-{net.id[:12]}"
        if not _IFNAME.match(br):
            raise InvalidConfig(f"invalid bridge name {br!r}: 1-15 of [A-Za-z0-9_.-]")
        mtu = 0
        if opts.get(P + "driver.mtu"):
            try:
                mtu = int(opts[P + "driver.mtu"])
            except ValueError:
                raise InvalidConfig(f"invalid MTU {opts[P + 'driver.mtu']!r}") from None
            if not 68 <= mtu <= 65535:
                raise InvalidConfig(f"invalid MTU {mtu}: want 68-65535")
        modes = {}
        for fam in ("ipv4", "ipv6"):
            mode = opts.get(P + f"bridge.gateway_mode_{fam}") or "nat"
            if mode not in GATEWAY_MODES:
                raise InvalidConfig(
                    f"invalid gateway mode {mode!r} for {fam}: want one of "
                    + ", ".join(GATEWAY_MODES)
                )
            if mode == "isolated" and not net.internal:
                raise InvalidConfig("gateway mode 'isolated' can only be used with --internal")
            modes[fam] = mode
        host_ip = opts.get(P + "bridge.host_binding_ipv4", "")
        if host_ip:
            try:
                ipaddress.ip_address(host_ip)
            except ValueError:
                raise InvalidConfig(f"invalid host binding address {host_ip!r}") from None
        prefix = opts.get(P + "container_iface_prefix") or "eth"
        if not re.match(r"^[A-Za-z][A-Za-z0-9_-]{0,11}\Z", prefix):
            raise InvalidConfig(f"invalid container interface prefix {prefix!r}")
        # Whose bridge is it? One that exists already and does not carry this
        # network's mark is the operator's: kanal adds its gateways and ports to
        # it and takes only those away again (as docker does), never the bridge.
        with Netlink() as nl:
            link = nl.find_link(br)
            foreign: list[str] | None = None
            if link is not None:
                if link.kind != "bridge":
                    raise InvalidConfig(f"{br!r} already exists but is not a bridge")
                if link.alias != net.mark:
                    foreign = [str(a.interface) for a in nl.addrs(link.index)]
        net.driver_state = {
            "bridge": br,
            # the addresses an operator's bridge had before kanal came (None: kanal's bridge)
            "foreign_addrs": foreign,
            "mtu": mtu,
            "masquerade": _bool(opts, P + "bridge.enable_ip_masquerade", True),
            "icc": _bool(opts, P + "bridge.enable_icc", True),
            "inhibit_ipv4": _bool(opts, P + "bridge.inhibit_ipv4", False),
            "host_ip": host_ip,
            "modes": modes,
            "iface_prefix": prefix,
            # Served to dockerd (kanal's Docker plugin): dockerd's FORWARD policy
            # drops what it did not program, so this bridge must accept its own.
            "iptables_forward": bool(net.labels.get("kanal.docker.network")),
        }

    def conflist(self, net: Network, ep: Endpoint | None = None) -> ConfList:
        """The CNI configuration list of an endpoint (without ``ep``: no default route)."""
        st = net.driver_state
        masq = st["masquerade"] and not net.internal and st["modes"]["ipv4"].startswith("nat")
        bridge: dict[str, Any] = {
            "type": "bridge",
            "bridge": st["bridge"],
            "isGateway": not net.internal or st["modes"]["ipv4"] != "isolated",
            "ipMasq": masq,
            "hairpinMode": True,
            "ipam": {"type": "static"},
        }
        if st["inhibit_ipv4"] or st["modes"]["ipv4"] == "isolated":
            bridge["isGateway"] = False
        if not st["icc"]:
            bridge["portIsolation"] = True
        if st["mtu"]:
            bridge["mtu"] = st["mtu"]
        bridge["ipam"]["routes"] = default_routes(net, ep)
        plugins: list[dict[str, Any]] = [bridge]
        # portmap only for an endpoint with published ports: one plugin call less on
        # every other connect and disconnect (the conflist is the endpoint's own).
        if not net.internal and (ep is None or ep.ports):
            plugins.append(
                {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
            )
        doc = {"cniVersion": "1.0.0", "name": f"kanal-{net.id[:12]}", "plugins": plugins}
        return parse_conflist(json.dumps(doc))

    def reserve(self, net: Network) -> None:
        pass

    def create_network(self, net: Network) -> None:
        st = net.driver_state
        br = st["bridge"]
        with Netlink() as nl:
            link, created = nl.ensure_owned_bridge(
                br, owner=net.mark, mtu=st["mtu"], mac=random_mac(), no_ipv6_ll=not net.enable_ipv6
            )
            if created:
                # An IPv4-only network's bridge has no IPv6 at all (as docker's): no
                # MLD or DAD, and nothing its first port leaves behind (a multicast
                # route appears with the first carrier otherwise).
                knob = "accept_ra" if net.enable_ipv6 else "disable_ipv6"
                try:
                    write_sysctl(f"net/ipv6/conf/{br}/{knob}", "0" if net.enable_ipv6 else "1")
                except KanalError:
                    pass
            nl.set_up(link.index)
        gateways = self._gateways(net)
        if gateways:
            with raw_socket() as s:
                b = Batch(s)
                for gw in gateways:
                    b.add_addr(link.index, gw, exist_ok=True, nodad=True)
                b.commit()
            for fam in {gw.version for gw in gateways}:
                key = "net/ipv4/ip_forward" if fam == 4 else "net/ipv6/conf/all/forwarding"
                if self.ctx.sysctls is not None:
                    self.ctx.sysctls.claim(key, "1", net.id)
                else:
                    write_sysctl(key, "1")
        add_network_policy(net.id[:12], br, internal=net.internal)
        if st.get("iptables_forward"):
            allow_bridge(br)

    def _gateways(self, net: Network) -> list[Any]:
        st = net.driver_state
        out = []
        for c in net.ipam:
            if not c.gateway:
                continue
            sub = ipaddress.ip_network(c.subnet)
            fam = "ipv4" if sub.version == 4 else "ipv6"
            if st["modes"][fam] == "isolated" or (sub.version == 4 and st["inhibit_ipv4"]):
                continue
            out.append(ipaddress.ip_interface(f"{c.gateway}/{sub.prefixlen}"))
        return out

    def delete_network(self, net: Network) -> None:
        """Remove what kanal made for the network: its bridge if kanal created it
        (the mark says so), else only its gateway addresses; its firewall chain and
        set elements; the host sysctls it claimed. Each step runs even if an earlier
        one failed."""
        errors: list[Exception] = []
        br = net.driver_state.get("bridge", "")

        def step(fn: Any, *args: Any) -> None:
            try:
                fn(*args)
            except KanalError as e:
                errors.append(e)

        step(del_network_policy, net.id[:12], br)
        if net.driver_state.get("iptables_forward"):
            step(disallow_bridge, br)
        # Subnet entries of the network's masquerade and port maps: an endpoint's
        # DEL leaves them (other containers may share them), the network's end not.
        step(drop_network_entries, f"kanal-{net.id[:12]}")
        step(self._remove_bridge, net)
        if self.ctx.sysctls is not None:
            step(self.ctx.sysctls.release, net.id)
        if errors:
            raise TeardownError(f"removing network {net.name}", errors)

    def idle(self, net: Network) -> None:
        drop_subnet_entries(
            f"kanal-{net.id[:12]}", [ipaddress.ip_network(c.subnet) for c in net.ipam]
        )

    def _remove_bridge(self, net: Network) -> None:
        st = net.driver_state
        with Netlink() as nl:
            link = nl.find_link(st.get("bridge", "") or "-")
            if link is None:
                return
            if link.alias == net.mark:
                nl.del_link(index=link.index)
                return
            # The operator's bridge: only the gateways kanal added to it go.
            before = set(st.get("foreign_addrs") or [])
            for gw in self._gateways(net):
                if str(gw) not in before:
                    nl.del_addr(link.index, gw)

    # --- endpoints ---------------------------------------------------------------

    def _runtime(self, net: Network, ep: Endpoint) -> RuntimeConf:
        return static_runtime(net, ep, net.driver_state.get("host_ip", ""))

    def join(self, net: Network, ep: Endpoint) -> None:
        result = add(self.ctx, self.conflist(net, ep), self._runtime(net, ep))
        for iface in result.interfaces:
            if iface.sandbox:
                ep.mac = iface.mac
            elif iface.name != net.driver_state["bridge"]:
                ep.driver_state["host_veth"] = iface.name

    def leave(self, net: Network, ep: Endpoint) -> None:
        self.ctx.cni.del_network_list(self.conflist(net, ep), self._runtime(net, ep))

    def endpoint_ok(self, net: Network, ep: Endpoint) -> bool:
        with Netlink() as nl:
            veth = nl.find_link(ep.driver_state.get("host_veth", "") or "-")
            br = nl.find_link(net.driver_state["bridge"])
        if veth is None or br is None or veth.master != br.index:
            return False
        rt = self._runtime(net, ep)
        try:
            return self.ctx.cni.get_cached_result(self.conflist(net, ep), rt) is not None
        except KanalError:
            return False  # a corrupt cache entry: rejoin, which rewrites it

    # --- what an outside hand may take away (kanal.engine.repair) ----------------

    def _masq(self, net: Network) -> bool:
        st = net.driver_state
        return bool(st["masquerade"]) and not net.internal and st["modes"]["ipv4"].startswith("nat")

    def _owners(self, net: Network, ep: Endpoint) -> tuple[Any, Any]:
        """The firewall owners of the endpoint's masquerade and published ports: the
        CNI chain's (network, container id, ifname), or the Docker plugin's."""
        name = f"kanal-{net.id[:12]}"
        if ep.driver_state.get("external"):
            return Owner(name, ep.id, "dockerif"), Owner(name, ep.id, "dockerpm")
        return Owner(name, ep.id, ep.ifname), Owner(name, ep.id, ep.ifname)

    def firewall_expect(self, net: Network, ep: Endpoint) -> list[tuple[str, str, int]]:
        """What the endpoint's entries in kanal's nftables table are: (group, owner
        tag, how many), the group ``masq`` (sets masq4/6) or ``ports`` (the
        port maps pm_any*/pm_ip*)."""
        masq, ports = self._owners(net, ep)
        ifaces = [ipaddress.ip_interface(c) for c in (ep.ipv4, ep.ipv6) if c]
        out = []
        if self._masq(net) and ifaces:
            out.append(("masq", masq.tag, len(ifaces)))
        if ep.ports and not net.internal:
            host_ip = net.driver_state.get("host_ip", "")
            n = 0
            for p in ep.ports:
                bound = p.host_ip or host_ip
                fam = ipaddress.ip_address(bound).version if bound else 0
                n += sum(1 for i in ifaces if not fam or i.version == fam)
            if n:
                out.append(("ports", ports.tag, n))
        return out

    def restore_firewall(self, net: Network, ep: Endpoint) -> None:
        """Write the endpoint's nftables entries again (all idempotent adds)."""
        add_network_policy(net.id[:12], net.driver_state["bridge"], internal=net.internal)
        ifaces = [ipaddress.ip_interface(c) for c in (ep.ipv4, ep.ipv6) if c]
        masq, ports = self._owners(net, ep)
        if self._masq(net) and ifaces:
            get_backend("nftables").add_masquerade(
                [Masquerade(masq, i.ip, i.network) for i in ifaces]
            )
        if ep.ports and not net.internal and ifaces:
            host_ip = net.driver_state.get("host_ip", "")
            mappings = [
                PortMapping(
                    p.host_port,
                    p.container_port,
                    p.protocol,
                    ipaddress.ip_address(p.host_ip or host_ip) if (p.host_ip or host_ip) else None,
                )
                for p in ep.ports
            ]
            add_portmaps(
                ports,
                mappings,
                [i.ip for i in ifaces],
                [i.network for i in ifaces],
                snat=True,
                masq_all=False,
            )

    # --- endpoints whose interface another runtime places (Docker's remote driver) ---

    def attach_detached(self, net: Network, ep: Endpoint) -> str:
        """Make the endpoint's veth pair with the far end left in this namespace.

        The bridge end is up on the network's bridge (hairpin; isolated when ICC is
        off); the far end, named in ``ep.driver_state["peer"]``, is what dockerd
        moves into the sandbox and addresses itself (libnetwork's Join contract).
        Masquerade for the endpoint's addresses as the CNI path does. Idempotent:
        a retried call replaces a pair left by the previous one. Returns the far
        end's name.
        """
        st = net.driver_state
        h = hashlib.sha256(ep.id.encode()).hexdigest()[:11]
        host, peer = f"kvh{h}", f"kvc{h}"
        ep.driver_state.update({"host_veth": host, "peer": peer, "external": True})
        if _link_exists(host) or _link_exists(peer):
            self.detach(net, ep)  # a retried Join: replace the pair the first one made (marked)
        wait_for_host(host)
        wait_for_host(peer)
        ep.mac = ep.mac or random_mac()
        with Netlink() as nl:
            br = nl.find_link(st["bridge"])
        if br is None:
            raise KanalError(f"bridge {st['bridge']} of network {net.name} is missing")
        # The bridge plugin's own veth step (hairpin; ICC off is port isolation),
        # the far end made in this namespace instead of a container's.
        port = PortOptions(mtu=st["mtu"], hairpin=True, isolated=not st["icc"])
        with open("/proc/thread-self/ns/net", "rb") as here, ExitStack() as undo:
            setup_veth(
                Bridge(br.index, br.name, br.mac), here.fileno(), peer, ep.mac, undo, port,
                host_name=host, alias=ep.mark,
            )  # fmt: skip
            with Netlink() as nl:  # the far end too: dockerd may hand it back one day
                nl.set_link(nl.get_link(peer).index, ifalias=ep.mark)
            masq = st["masquerade"] and not net.internal and st["modes"]["ipv4"].startswith("nat")
            if masq:
                rules = [
                    Masquerade(self._owner(net, ep), a.ip, a.network)
                    for a in (ipaddress.ip_interface(c) for c in (ep.ipv4, ep.ipv6) if c)
                ]
                if rules:
                    get_backend().add_masquerade(rules)
            undo.pop_all()
        return peer

    def _owner(self, net: Network, ep: Endpoint) -> Any:
        return Owner(f"kanal-{net.id[:12]}", ep.id, "dockerif")

    def detach(self, net: Network, ep: Endpoint) -> None:
        """Undo :meth:`attach_detached`; idempotent (the pair may be gone or moved)."""
        errors: list[Exception] = []
        try:
            teardown_masquerade(self._owner(net, ep))
        except KanalError as e:
            errors.append(e)
        # The host end takes its peer with it (deferred in kanald, as CNI DEL's
        # veths); a peer dockerd moved back after the pair broke goes on its own.
        # Only links that carry the endpoint's mark: a namesake is someone else's.
        for name in (ep.driver_state.get("host_veth"), ep.driver_state.get("peer")):
            if not name:
                continue
            try:
                with Netlink() as nl:
                    link = nl.find_link(name)
                if link is not None and link.alias == ep.mark and delete_host_link(name):
                    break
            except KanalError as e:
                errors.append(e)
        if errors:
            raise TeardownError(f"detaching endpoint {ep.id[:12]}", errors)


def _link_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False
