"""The ``ovs`` network driver: an Open vSwitch bridge, sandboxes on veth ports.

What seed 002 does by hand with ``ovs-vsctl add-br`` / ``ovs-docker add-port`` /
``type=vxlan options:remote_ip=… options:key=flow``. A network is an OVS bridge
(``kovs-<id8>`` or ``-o ovs.bridge=NAME``) whose internal port holds the gateway
address of each subnet, so the host routes between subnets (and networks) when it
forwards; each endpoint is a veth pair, host end a port of the bridge, the other
end ``ep.ifname`` in the sandbox with the engine's addresses and a default route
via the gateway. ``-o ovs.vxlan_remote=IP[,IP…]`` (or ``=cluster``: every other host of kanald's
cluster, followed at each reconcile) adds one VXLAN port per remote
(``key=flow`` unless ``ovs.vxlan_key=VNI``; ``ovs.vxlan_port`` for the UDP port):
sandboxes of the same subnet on those hosts share one L2 segment. The veths then
get MTU 1450 (``ovs.mtu`` to change) so encapsulated frames fit a 1500 underlay.

Datapath: ``ovs.datapath=netdev|system``, by default ``system`` when the
openvswitch kernel module is loaded, else ``netdev`` (userspace). In userspace
OVS tunnels by itself: the route to every remote must leave through an OVS
bridge's internal port (the underlay link on an OVS bridge holding this host's
underlay address, as OVS's userspace-tunneling guide does) — checked at create.
Userspace also needs tx checksum offload off on the sandbox end of each veth.

OVSDB: ``-o ovs.db=unix:/path`` (default ``$KANAL_OVS_DB`` or
/var/run/openvswitch/db.sock); ovs-vswitchd must run in kanald's namespace.
Ownership: a bridge that existed before the network is the operator's — kanal
adds its ports and gateway addresses and removes exactly those at teardown, and
several networks may share it (seed 002's two subnets on one bridge); a bridge
kanal made carries ``external_ids:kanal-owner=<network id>``, belongs to that
network alone and goes with it. Every port kanal adds carries the same key.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from kanal.errors import Conflict, InvalidConfig, KanalError, NotFound, TeardownError, best_effort

if TYPE_CHECKING:
    from kanal.engine.context import EngineContext
    from kanal.engine.model import Endpoint, Network
    from kanal.netlink.batch import Batch
    from kanal.ovs import Vsctl

__all__ = ["OPTIONS", "OvsDriver"]

OPTIONS = (
    "ovs.bridge",
    "ovs.vxlan_remote",
    "ovs.vxlan_key",
    "ovs.vxlan_port",
    "ovs.db",
    "ovs.datapath",
    "ovs.mtu",
)
DATAPATHS = ("netdev", "system")
VXLAN_MTU = 1450  # 1500 - 50 bytes of outer Ethernet/IPv4/UDP/VXLAN headers
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z")
EP_KEY = "kanal-endpoint"
Iface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _int_option(opts: dict[str, str], key: str, lo: int, hi: int) -> int:
    raw = opts.get(key, "")
    if not raw:
        return 0
    try:
        v = int(raw)
    except ValueError:
        raise InvalidConfig(f"invalid {key} {raw!r}: want a number {lo}-{hi}") from None
    if not lo <= v <= hi:
        raise InvalidConfig(f"invalid {key} {v}: want {lo}-{hi}")
    return v


def _remotes(raw: str) -> list[str]:
    out: list[str] = []
    for item in raw.split(","):
        item = item.strip()
        try:
            ip = ipaddress.ip_address(item)
        except ValueError:
            raise InvalidConfig(
                f"invalid ovs.vxlan_remote {item!r}: want IP[,IP...] (e.g. 192.168.1.10)"
            ) from None
        if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
            raise InvalidConfig(f"invalid ovs.vxlan_remote {item!r}: want a unicast host address")
        if str(ip) not in out:
            out.append(str(ip))
    return out


def vxlan_port_name(net_id: str, remote: str) -> str:
    """The VXLAN port of a network towards ``remote``: stable, 12 characters."""
    return "kx" + hashlib.sha256(f"{net_id}/{remote}".encode()).hexdigest()[:10]


def host_veth_name(ep_id: str) -> str:
    return "kov" + ep_id[:12]


class OvsDriver:
    name = "ovs"
    needs_ipam = True
    has_interface = True

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    # --- network -----------------------------------------------------------------

    def prepare(self, net: Network) -> None:
        # lazy: loaded with the driver table, used only by an ovs network
        from kanal.ovs import OWNER_KEY, OvsdbError, Vsctl, check_db, default_db, kernel_datapath

        opts = net.options
        unknown = sorted(set(opts) - set(OPTIONS))
        if unknown:
            raise InvalidConfig(
                f"unknown ovs option(s): {', '.join(unknown)} (known: {', '.join(OPTIONS)})"
            )
        br = opts.get("ovs.bridge") or f"kovs-{net.id[:8]}"
        if not _IFNAME.match(br):
            raise InvalidConfig(f"invalid ovs.bridge {br!r}: 1-15 of [A-Za-z0-9_.-]")
        db = opts.get("ovs.db") or default_db()
        check_db(db)
        datapath = opts.get("ovs.datapath") or ("system" if kernel_datapath() else "netdev")
        if datapath not in DATAPATHS:
            raise InvalidConfig(f"invalid ovs.datapath {datapath!r}: want netdev or system")
        if datapath == "system" and not kernel_datapath():
            raise InvalidConfig(
                "ovs.datapath=system needs the openvswitch kernel module, which is not "
                "loaded here: use ovs.datapath=netdev (userspace)"
            )
        from_cluster = opts.get("ovs.vxlan_remote") == "cluster"
        if from_cluster:
            remotes = self._cluster_peers()
        else:
            remotes = _remotes(opts["ovs.vxlan_remote"]) if opts.get("ovs.vxlan_remote") else []
        key = opts.get("ovs.vxlan_key") or "flow"
        if key != "flow":
            key = str(_int_option(opts, "ovs.vxlan_key", 0, (1 << 24) - 1))
        tunnels = bool(remotes) or from_cluster
        if not tunnels and ("ovs.vxlan_key" in opts or "ovs.vxlan_port" in opts):
            raise InvalidConfig("ovs.vxlan_key and ovs.vxlan_port need ovs.vxlan_remote")
        dst_port = _int_option(opts, "ovs.vxlan_port", 1, 65535)
        mtu = _int_option(opts, "ovs.mtu", 68, 65535) or (VXLAN_MTU if tunnels else 0)

        vs = Vsctl(db)
        try:
            bridges = vs.bridges()
        except OvsdbError as e:
            raise InvalidConfig(f"ovs.db {db}: {e}") from None
        existing = bridges.get(br)
        if existing is not None and existing.external_ids.get(OWNER_KEY):
            raise Conflict(
                f"OVS bridge {br} belongs to kanal network {existing.external_ids[OWNER_KEY][:12]}"
            )
        if remotes and datapath == "netdev":
            for r in remotes:
                _check_tunnel_route(r, set(bridges) - {br})
        net.driver_state = {
            "bridge": br,
            "db": db,
            "datapath": existing.datapath_type if existing else datapath,
            # made by kanal (and so deleted with the network), or the operator's
            "own_bridge": existing is None,
            # the operator's bridge may carry other networks too (their own ports)
            "shared_bridge": existing is not None,
            "vxlan_remotes": remotes,
            # the remotes are the cluster's other hosts, re-read at each reconcile
            "vxlan_from_cluster": from_cluster,
            "vxlan_key": key,
            "vxlan_port": dst_port,
            "mtu": mtu,
        }

    def _cluster_peers(self) -> list[str]:
        """The advertise addresses of the cluster's other hosts (seed 002's peers)."""
        cluster = self.ctx.cluster
        if cluster is None:
            raise InvalidConfig(
                "ovs.vxlan_remote=cluster needs kanald --cluster-store (the peers are its hosts)"
            )
        return sorted(r.advertise_addr for r in cluster.member.nodes() if not r.self_)

    def _follow_cluster(self, net: Network, vs: Vsctl) -> None:
        """Tunnels to the hosts in the cluster now: new ones added by the caller,
        those of hosts gone removed here. Kept as they are while etcd is down."""
        # lazy: loaded with the driver table, used only by an ovs network
        from kanal.errors import Unavailable

        st = net.driver_state
        try:
            now = self._cluster_peers()
        except Unavailable:
            return
        for remote in set(st["vxlan_remotes"]) - set(now):
            best_effort(vs.del_port, st["bridge"], vxlan_port_name(net.id, remote))
        st["vxlan_remotes"] = now

    def _vsctl(self, net: Network) -> Vsctl:
        # lazy: loaded with the driver table, used only by an ovs network
        from kanal.ovs import Vsctl

        return Vsctl(net.driver_state["db"])

    def _gateways(self, net: Network) -> list[Iface]:
        out: list[Iface] = []
        for c in net.ipam:
            if c.gateway:
                sub = ipaddress.ip_network(c.subnet)
                out.append(ipaddress.ip_interface(f"{c.gateway}/{sub.prefixlen}"))
        return out

    def reserve(self, net: Network) -> None:
        pass

    def idle(self, net: Network) -> None:
        pass

    def create_network(self, net: Network) -> None:
        # lazy: loaded with the driver table, used only by an ovs network
        from kanal.netlink.batch import Batch, raw_socket
        from kanal.netlink.sysctl import write_sysctl
        from kanal.ovs import OWNER_KEY

        st = net.driver_state
        br = st["bridge"]
        vs = self._vsctl(net)
        if st["own_bridge"]:
            vs.ensure_bridge(
                br,
                datapath_type=st["datapath"],
                external_ids={OWNER_KEY: net.id},
                mtu=st["mtu"],
            )
        elif vs.bridge(br) is None:
            raise NotFound(f"OVS bridge {br} (not made by kanal) is gone")
        if st.get("vxlan_from_cluster"):
            self._follow_cluster(net, vs)
        for remote in st["vxlan_remotes"]:
            vs.add_vxlan_port(
                br,
                vxlan_port_name(net.id, remote),
                remote,
                key=st["vxlan_key"],
                dst_port=st["vxlan_port"],
                external_ids={OWNER_KEY: net.id},
            )
        # The bridge's internal port is a netdev in ovs-vswitchd's namespace (a tap
        # for the netdev datapath): the gateway of each subnet lives there.
        try:
            index = socket.if_nametoindex(br)
        except OSError:
            raise NotFound(
                f"the internal port of OVS bridge {br} is not in this network namespace: "
                "ovs-vswitchd must run in kanald's namespace"
            ) from None
        gateways = self._gateways(net)
        with raw_socket() as s:
            b = Batch(s)
            for gw in gateways:
                b.add_addr(index, gw, exist_ok=True, nodad=True)
            b.set_link(index=index, up=True)
            b.commit()
        for fam in sorted({gw.version for gw in gateways}):
            write_sysctl("net/ipv4/ip_forward" if fam == 4 else "net/ipv6/conf/all/forwarding", "1")

    def delete_network(self, net: Network) -> None:
        # lazy: loaded with the driver table, used only by an ovs network
        from kanal.ovs import OWNER_KEY

        st = net.driver_state
        br = st.get("bridge", "")
        if not br:
            return
        errors: list[Exception] = []

        def step(fn: Any, *args: Any) -> None:
            try:
                fn(*args)
            except KanalError as e:
                errors.append(e)

        vs = self._vsctl(net)
        bridge, mine = None, set()
        try:
            bridge = vs.bridge(br)
            mine = {p for p, o in vs.port_owners(br).items() if o == net.id} if bridge else set()
        except KanalError as e:
            errors.append(e)
        if (
            bridge is not None
            and st.get("own_bridge")
            and bridge.external_ids.get(OWNER_KEY) == net.id
        ):
            step(vs.del_bridge, br)
        elif bridge is not None:
            for port in sorted(mine):
                step(vs.del_port, br, port)
            step(self._del_gateways, net, br)
        # host ends of endpoints a crash left behind (normally gone with leave)
        for port in sorted(mine):
            if port.startswith("kov"):
                step(_del_link, port)
        if errors:
            raise TeardownError(f"removing network {net.name}", errors)

    def _del_gateways(self, net: Network, br: str) -> None:
        # lazy: loaded with the driver table, used only by an ovs network
        from kanal.netlink.batch import Batch, raw_socket

        try:
            index = socket.if_nametoindex(br)
        except OSError:
            return
        with raw_socket() as s:
            b = Batch(s)
            for gw in self._gateways(net):
                b.del_addr(index, gw)
            b.commit()

    # --- endpoints ---------------------------------------------------------------

    def join(self, net: Network, ep: Endpoint) -> None:
        # lazy: loaded with the driver table, used only by an ovs network
        from kanal.netlink.batch import Batch, raw_socket
        from kanal.netlink.ns import open_netns
        from kanal.netlink.reaper import wait_for
        from kanal.netlink.steps import in_container_fd, random_mac
        from kanal.ovs import OWNER_KEY

        st = net.driver_state
        host = host_veth_name(ep.id)
        mac = random_mac()
        vs = self._vsctl(net)
        wait_for(ep.netns, ep.ifname)  # a deferred delete of the same name
        with ExitStack() as undo:
            fd = open_netns(ep.netns)
            undo.callback(_close, fd)
            with raw_socket() as s:
                b = Batch(s)
                b.add_veth(host, ep.ifname, fd, peer_mac=mac, mtu=st["mtu"])
                # An OVS port needs no IPv6 address of its own (no DAD/MLD flooded)
                b.set_link(name=host, no_ipv6_link_local=True)
                b.set_link(name=host, up=True)
                b.commit()
            undo.callback(best_effort, _del_link, host)
            undo.callback(best_effort, vs.del_port, st["bridge"], host)
            vs.add_port(st["bridge"], host, external_ids={OWNER_KEY: net.id, EP_KEY: ep.id})
            addrs = [ipaddress.ip_interface(a) for a in (ep.ipv4, ep.ipv6) if a]
            gws = self._default_gateways(net, ep, addrs)
            ifname = ep.ifname
            userspace = st["datapath"] == "netdev"

            def inside(b: Batch) -> None:
                # lazy: loaded with the driver table, used only by an ovs network
                from kanal.ovs import tx_checksum_off

                if userspace:  # ovs-vswitchd fills in no checksum: TCP fails otherwise
                    tx_checksum_off(ifname)
                index = socket.if_nametoindex(ifname)
                for a in addrs:
                    b.add_addr(index, a, nodad=True)
                if not any(a.version == 6 for a in addrs):
                    b.set_link(index=index, no_ipv6_link_local=True)
                b.set_link(index=index, up=True)
                for gw in gws:
                    dst = ipaddress.ip_network("0.0.0.0/0" if gw.version == 4 else "::/0")
                    b.add_route(dst, gateway=gw, oif=index)
                b.commit()

            in_container_fd(fd, inside)
            undo.pop_all()
        _close(fd)
        ep.mac = mac
        ep.driver_state["host_veth"] = host

    def _default_gateways(
        self, net: Network, ep: Endpoint, addrs: list[Iface]
    ) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        """The gateway of each address's subnet, when this network has the default route."""
        if net.internal or not ep.default_gateway:
            return []
        out = []
        for a in addrs:
            for c in net.ipam:
                if c.gateway and a.ip in ipaddress.ip_network(c.subnet):
                    out.append(ipaddress.ip_address(c.gateway))
                    break
        return out

    def leave(self, net: Network, ep: Endpoint) -> None:
        host = ep.driver_state.get("host_veth") or host_veth_name(ep.id)
        errors: list[Exception] = []
        try:
            # No wait for ovs-vswitchd: the row is gone, it closes the port on its own.
            self._vsctl(net).del_port(net.driver_state["bridge"], host, wait=False)
        except NotFound:
            pass  # the bridge is gone: so is the port
        except KanalError as e:
            errors.append(e)
        try:
            _del_veth(ep, host)
        except KanalError as e:
            errors.append(e)
        if errors:
            raise TeardownError(f"removing endpoint {ep.id[:12]} from {net.name}", errors)

    def endpoint_ok(self, net: Network, ep: Endpoint) -> bool:
        host = ep.driver_state.get("host_veth") or host_veth_name(ep.id)
        try:
            socket.if_nametoindex(host)
        except OSError:
            return False
        try:
            vs = self._vsctl(net)
            return host in vs.list_ports(net.driver_state["bridge"]) and vs.port_ok(host)
        except KanalError:
            return False


def _check_tunnel_route(remote: str, ovs_bridges: set[str]) -> None:
    """Userspace tunnelling: the route to ``remote`` must leave through an OVS bridge."""
    # lazy: loaded with the driver table, used only by an ovs network
    from kanal.netlink.handle import Netlink

    ip = ipaddress.ip_address(remote)
    fam = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    with Netlink() as nl:
        routes = [r for r in nl.routes(table=254, family=fam) if ip in r.dst]
        best = max(routes, key=lambda r: (r.dst.prefixlen, -r.priority), default=None)
        dev = ""
        if best is not None and best.oif:
            link = nl.find_link_by_index(best.oif)
            dev = link.name if link else ""
    if not dev:
        raise InvalidConfig(f"ovs.vxlan_remote {remote}: no route to it on this host")
    if dev not in ovs_bridges:
        raise InvalidConfig(
            f"ovs.vxlan_remote {remote}: the route to it leaves through {dev}, not an OVS "
            "bridge. With the userspace datapath (netdev) OVS sends tunnel packets itself, "
            "through an OVS bridge's internal port: put the underlay link on an OVS bridge "
            "(netdev) that holds this host's underlay address"
        )


def _close(fd: int) -> None:
    import os

    try:
        os.close(fd)
    except OSError:
        pass


def _del_veth(ep: Endpoint, host: str) -> None:
    """Delete the endpoint's veth pair: from the sandbox end while its namespace
    exists (in kanald the unregister then runs after the reply, see
    kanal.netlink.reaper), else the host end, which takes the other with it."""
    import os

    # lazy: loaded with the driver table, used only by an ovs network
    from kanal.netlink.ns import open_netns
    from kanal.netlink.reaper import delete_container_link

    try:
        fd = open_netns(ep.netns) if ep.netns else -1
    except NotFound:
        fd = -1
    if fd >= 0:
        try:
            if delete_container_link(fd, ep.netns, ep.ifname):
                return
        finally:
            os.close(fd)
    _del_link(host)


def _del_link(name: str) -> None:
    # lazy: loaded with the driver table, used only by an ovs network
    from kanal.netlink.batch import Batch, raw_socket

    with raw_socket() as s:
        b = Batch(s)
        b.del_link(name=name)
        b.commit()
