"""The ``bridge`` CNI plugin: a veth pair from the container to a Linux bridge.

Spec-exact replacement of the reference plugin (cni.md §2.1). Differences that
are deliberate: the veth is created from the host with its peer made directly in
the container namespace (one kernel operation, no move); IPv6 addresses are added
without DAD unless ``enabledad`` (no settle wait); DEL removes masquerade state
by (network, container, ifname) even when the netns is gone (plugins#810); GC
drops masquerade entries of attachments that are no longer valid.
"""

from __future__ import annotations

import _socket as socket  # if_nametoindex, without socket's own ~5 ms import
import _thread
import errno
import ipaddress
import os
import time
from contextlib import ExitStack

from kanal._dataclass import dataclass, field
from kanal.errors import Conflict, Internal, InvalidConfig, KanalError, NotFound
from kanal.netlink import reaper
from kanal.netlink.batch import Batch, free_index, raw_socket
from kanal.netlink.handle import Link, LinkNotFound, Netlink
from kanal.netlink.ns import NetnsNotFound, open_netns
from kanal.netlink.sysctl import write_sysctl
from kanal.plugins import _conf as c
from kanal.plugins._iface import (
    configure_iface,
    del_attachment,
    gc_attachments,
    in_container,
    in_container_fd,
    prepare_sysctls,
    random_mac,
    validate_expected_ips,
    validate_expected_routes,
)
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.skel.delegate import delegate
from kanal.spec import gotypes
from kanal.spec.gojson import BOOL, INT, STRING, Ptr, Slice, Struct
from kanal.spec.types import DNS, Interface, IPConfig, Result, Route
from kanal.spec.versions import ALL_VERSIONS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["PLUGIN", "BridgeConf", "load_conf", "main"]

DEFAULT_BRIDGE = "cni0"


@dataclass
class BridgeConf:
    name: str
    cni_version: str
    br_name: str = DEFAULT_BRIDGE
    is_gw: bool = False
    is_default_gw: bool = False
    force_address: bool = False
    ip_masq: bool = False
    ip_masq_backend: str | None = None
    mtu: int = 0
    hairpin: bool = False
    promisc: bool = False
    vlan: int = 0
    vlans: list[int] = field(default_factory=list)
    vlan_trunk_set: bool = False
    preserve_default_vlan: bool = False
    macspoofchk: bool = False
    enable_dad: bool = False
    disable_container_iface: bool = False
    port_isolation: bool = False
    ipam_type: str = ""
    dns: DNS | None = None
    mac: str = ""
    conf: dict[str, Any] = field(default_factory=dict)  # as decoded


VLAN_TRUNK = Struct("VlanTrunk", [("minID", Ptr(INT)), ("maxID", Ptr(INT)), ("id", Ptr(INT))])
NETCONF = gotypes.NETCONF.extend(
    "NetConf",
    [
        ("bridge", STRING),
        ("isGateway", BOOL),
        ("isDefaultGateway", BOOL),
        ("forceAddress", BOOL),
        ("ipMasq", BOOL),
        ("ipMasqBackend", Ptr(STRING)),
        ("mtu", INT),
        ("hairpinMode", BOOL),
        ("promiscMode", BOOL),
        ("vlan", INT),
        ("vlanTrunk", Slice(Ptr(VLAN_TRUNK))),
        ("preserveDefaultVlan", BOOL),
        ("macspoofchk", BOOL),
        ("enabledad", BOOL),
        ("disableContainerInterface", BOOL),
        ("portIsolation", BOOL),
        ("args", Struct("", [("cni", c.MAC_ONLY)], pkg="")),
        ("runtimeConfig", c.MAC_ONLY),
    ],
)


def _vlan_trunk(items: list[Any]) -> list[int]:
    vids: set[int] = set()
    for item in items:
        if item is None:
            continue
        lo, hi, one = item["minID"], item["maxID"], item["id"]
        if lo is not None and hi is not None:
            if lo <= 0 or lo > 4094:
                raise InvalidConfig("incorrect trunk minID parameter")
            if hi <= 0 or hi > 4094:
                raise InvalidConfig("incorrect trunk maxID parameter")
            if hi < lo:
                raise InvalidConfig("minID is greater than maxID in trunk parameter")
            vids.update(range(lo, hi + 1))
        elif lo is None and hi is not None:
            raise InvalidConfig(
                "minID and maxID should be configured simultaneously, minID is missing"
            )
        elif lo is not None and hi is None:
            raise InvalidConfig(
                "minID and maxID should be configured simultaneously, maxID is missing"
            )
        if one is not None:
            if one <= 0 or one > 4094:
                raise InvalidConfig("incorrect trunk id parameter")
            vids.add(one)
    return sorted(vids)


def load_conf(args: CmdArgs, *, lenient: bool = False) -> BridgeConf:
    """Parse and validate the config (and the MAC from CNI_ARGS/args/runtimeConfig).

    ``lenient`` (DEL): Go's decode errors and the checks below are skipped; only
    what teardown needs (name, ipam type, macspoofchk) matters then.
    """
    from kanal.spec.args import load_args

    conf = c.load(NETCONF, args, lenient=lenient)
    n = BridgeConf(name=conf["name"], cni_version=args.cni_version, conf=conf)
    n.is_gw = conf["isGateway"]
    n.is_default_gw = conf["isDefaultGateway"]
    n.force_address = conf["forceAddress"]
    n.ip_masq = conf["ipMasq"]
    n.ip_masq_backend = conf["ipMasqBackend"]
    n.mtu = conf["mtu"]
    n.hairpin = conf["hairpinMode"]
    n.promisc = conf["promiscMode"]
    n.vlan = conf["vlan"]
    n.preserve_default_vlan = conf["preserveDefaultVlan"]
    n.macspoofchk = conf["macspoofchk"]
    n.enable_dad = conf["enabledad"]
    n.disable_container_iface = conf["disableContainerInterface"]
    n.port_isolation = conf["portIsolation"]
    n.ipam_type = conf["ipam"]["type"]
    if lenient:
        return n
    n.br_name = c.valid_ifname(conf["bridge"] or DEFAULT_BRIDGE, "bridge name")
    if n.ip_masq_backend not in (None, "iptables", "nftables"):
        raise InvalidConfig(
            f"unknown ipMasqBackend {n.ip_masq_backend!r}", 'must be "iptables" or "nftables"'
        )
    if n.mtu < 0:
        raise InvalidConfig(f"invalid MTU {n.mtu}")
    if n.vlan < 0 or n.vlan > 4094:
        raise InvalidConfig(f"invalid VLAN ID {n.vlan} (must be between 0 and 4094)")
    if conf["vlanTrunk"] is not None:
        n.vlan_trunk_set = True
        n.vlans = _vlan_trunk(conf["vlanTrunk"])
    n.dns = c.dns_of(conf)
    if args.args:
        env_mac = load_args(args.args, ("MAC",)).get("MAC", "")
        if env_mac:
            n.mac = env_mac
    if conf["args"]["cni"]["mac"]:
        n.mac = conf["args"]["cni"]["mac"]
    if conf["runtimeConfig"]["mac"]:
        n.mac = conf["runtimeConfig"]["mac"]
    if n.mac:
        n.mac = c.valid_mac(n.mac)
    if n.is_default_gw:
        n.is_gw = True
    return n


def _check_kernel_vlan(n: BridgeConf) -> None:
    # Why here: fail before any state exists rather than half-way through.
    if (n.vlan or n.vlan_trunk_set) and not _vlan_filtering_supported():
        raise InvalidConfig(
            "bridge VLAN filtering (vlan/vlanTrunk) is not supported by this kernel"
        )


_VLAN_SUPPORT: bool | None = None


def _vlan_filtering_supported() -> bool:
    global _VLAN_SUPPORT
    if _VLAN_SUPPORT is None:
        # Kernels built without CONFIG_BRIDGE_VLAN_FILTERING refuse the attribute.
        _VLAN_SUPPORT = _probe_vlan_filtering()
    return _VLAN_SUPPORT


def _probe_vlan_filtering() -> bool:
    name = "kvp" + os.urandom(4).hex()
    with Netlink() as nl:
        try:
            nl.ensure_bridge(name, vlan_filtering=True)
        except KanalError:
            return False
        finally:
            nl.del_link(name)
    return True


def _gateway_for(ipc: IPConfig) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipc.address.network.network_address + 1


def _calc_gateways(result: Result, n: BridgeConf) -> dict[int, list[Any]]:
    """Go calcGateways: fill gateways, add default routes, collect bridge addresses."""
    gws: dict[int, list[Any]] = {4: [], 6: []}
    default_found = {4: False, 6: False}
    for ipc in result.ips:
        fam = ipc.address.version
        ipc.interface = 2
        if ipc.gateway is None and n.is_gw:
            ipc.gateway = _gateway_for(ipc)
        if n.is_default_gw and not default_found[fam]:
            default_net = "0.0.0.0/0" if fam == 4 else "::/0"
            for r in result.routes:
                if r.gw is not None and str(r.dst) == default_net:
                    default_found[fam] = True
                    break
            if not default_found[fam]:
                result.routes.append(Route(dst=ipaddress.ip_interface(default_net), gw=ipc.gateway))
                default_found[fam] = True
        if n.is_gw and ipc.gateway is not None:
            gws[fam].append(
                ipaddress.ip_interface(f"{ipc.gateway}/{ipc.address.network.prefixlen}")
            )
    return gws


@dataclass(frozen=True)
class _Bridge:
    index: int
    name: str
    mac: str
    # The MAC was set explicitly (kanal made the bridge, or pinned it): it no longer
    # follows the ports'. An unpinned one may change when a port is added.
    pinned: bool = True


# (netns id, bridge name) -> bridge. Why: in kanald every ADD on a network would
# otherwise re-read the same bridge; an if_nametoindex() (one ioctl) proves the
# cached entry still names the same device.
_BRIDGES: dict[tuple[tuple[int, int], str], _Bridge] = {}
_BRIDGES_LOCK = _thread.allocate_lock()


def _ensure_bridge(n: BridgeConf) -> _Bridge:
    from kanal.netlink.ns import current_netns_id

    key = (current_netns_id(), n.br_name)
    cached = _BRIDGES.get(key)
    if cached is not None and not n.promisc:
        try:
            if socket.if_nametoindex(n.br_name) == cached.index:
                return cached
        except OSError:
            pass
    with _BRIDGES_LOCK, Netlink() as nl:
        # A MAC set at creation is kept: the bridge does not follow its ports'
        # MACs as they churn (what Go's ensureAddr re-setting it achieves).
        link, created = nl.ensure_bridge(
            n.br_name, mtu=n.mtu, vlan_filtering=bool(n.vlan or n.vlans), mac=random_mac()
        )
        if n.promisc and not link.promiscuity:
            nl.set_promisc(link.index)
        # As Go, on a bridge kanal did not make too: the plugin owns its routes.
        try:
            write_sysctl(f"net/ipv6/conf/{n.br_name}/accept_ra", "0")
        except KanalError:
            pass
        br = _Bridge(link.index, link.name, link.mac, pinned=created)
        _BRIDGES[key] = br
        return br


def _ensure_gateway(br: _Bridge, gw: Any, force: bool) -> None:
    """Go ensureAddr, fast when the address is already there (every ADD but the first)."""
    with raw_socket() as s:
        b = Batch(s)
        b.add_addr(br.index, gw, exist_ok=True, nodad=True)
        (err,) = b.commit()
    if err == errno.EEXIST:
        return
    # Newly added: now apply Go's rule about other addresses on the bridge.
    with Netlink() as nl:
        others = [
            a.interface
            for a in nl.addrs(br.index)
            if a.interface.version == gw.version
            and a.interface != gw
            and (gw.version == 4 or a.interface.ip in gw.network or gw.ip in a.interface.network)
        ]
        if others and not force:
            nl.del_addr(br.index, gw)
            raise Conflict(f"{br.name!r} already has an IP address different from {gw}")
        if others:
            for other in others:
                nl.del_addr(br.index, other)
            # Removing a primary address takes its secondaries with it (the gateway
            # was added next to it): put the gateway back.
            with raw_socket() as s:
                b = Batch(s)
                b.add_addr(br.index, gw, exist_ok=True, nodad=True)
                b.commit()
        if not br.pinned:
            # Go sets the bridge's MAC to itself here, so it no longer follows its ports.
            nl.set_link(br.index, address=br.mac)
            _pinned(br)


def _pinned(br: _Bridge) -> None:
    with _BRIDGES_LOCK:
        for key, cached in list(_BRIDGES.items()):
            if cached.index == br.index and cached.name == br.name:
                _BRIDGES[key] = _Bridge(br.index, br.name, br.mac, pinned=True)


def _current_mac(br: _Bridge) -> str:
    """The bridge's MAC now (Go reads it again: an unpinned one may have taken a port's)."""
    cached = next((b for b in _BRIDGES.values() if b.index == br.index), br)
    if br.pinned or cached.pinned:
        return br.mac
    with Netlink() as nl:
        return nl.get_link_by_index(br.index).mac


def _enable_forward(family: int) -> None:
    key = "net/ipv4/ip_forward" if family == 4 else "net/ipv6/conf/all/forwarding"
    from kanal.netlink.sysctl import read_sysctl

    if read_sysctl(key) != "1":
        write_sysctl(key, "1")


def _setup_veth(
    n: BridgeConf,
    br: _Bridge,
    netns_fd: int,
    ifname: str,
    cont_mac: str,
    undo: ExitStack,
    vlan: int = 0,
    host_name: str = "",
    alias: str = "",
) -> tuple[str, int, str]:
    """Create the pair attached to the bridge and up; returns (name, index, mac).

    The bridge end is ``host_name``, or a random ``veth…`` name; ``alias`` marks
    it from birth (in the creating batch).
    """
    brport = {}
    if n.hairpin:
        brport["mode"] = 1
    if n.port_isolation:
        brport["isolated"] = 1
    with raw_socket() as s:
        for _ in range(10):
            host, host_mac = host_name or "veth" + os.urandom(4).hex(), random_mac()
            b = Batch(s)
            index = free_index() if alias else 0
            # txqlen 0 on both ends, as Go's netlink library makes a veth.
            b.add_veth(
                host,
                ifname,
                netns_fd,
                mac=host_mac,
                peer_mac=cont_mac,
                mtu=n.mtu,
                master=br.index,
                index=index,
                txqlen=0,
            )
            # By the chosen index when there is one: then nothing below can land on
            # another link that happens to have the name.
            ref: dict[str, Any] = {"index": index} if index else {"name": host}
            if alias:
                b.set_link(**ref, alias=alias)
            # A bridge port needs no IPv6 address of its own: without one it sends
            # no DAD/MLD that the bridge would flood to every other port.
            b.set_link(**ref, no_ipv6_link_local=True)
            if brport:
                b.set_link(**ref, brport=brport)
            b.set_link(**ref, up=True)
            try:
                b.commit()
                break
            except Conflict:
                try:
                    socket.if_nametoindex(host)
                    if host_name:
                        raise Conflict(f"veth {host_name} already exists") from None
                    continue  # the random host name collided; try another
                except OSError:
                    raise Conflict(
                        f"container veth name provided ({ifname}) already exists"
                    ) from None
            except LinkNotFound:
                # The cached bridge vanished since; forget it and let the caller retry.
                _BRIDGES.clear()
                raise
        else:
            raise Internal("failed to find a unique veth name")
    index = socket.if_nametoindex(host)
    undo.callback(_del_link_quiet, index)
    try:
        write_sysctl(f"net/ipv6/conf/{host}/accept_ra", "0")
    except KanalError:
        pass
    vlans = [] if vlan else n.vlans
    vlan = vlan or n.vlan
    if vlan or vlans:
        with Netlink() as nl:
            if not n.preserve_default_vlan:
                nl.vlan_del(index, 1)
            if vlan:
                nl.vlan_add(index, vlan, pvid=True, untagged=True)
            for v in vlans:
                nl.vlan_add(index, v)
            if not vlan and vlans:
                nl.vlan_add(index, 1, pvid=True, untagged=True)
    return host, index, host_mac


def _del_link_quiet(index: int) -> None:
    with raw_socket() as s:
        b = Batch(s)
        b.del_link(index=index)
        try:
            b.commit()
        except KanalError:
            pass


def _oper_up(host: str, index: int) -> bool:
    # sysfs is cheap when it shows our namespace (as under `ip netns exec`).
    try:
        with open(f"/sys/class/net/{host}/ifindex") as f:
            same = int(f.read()) == index
        if same:
            with open(f"/sys/class/net/{host}/operstate") as f:
                return f.read().strip() == "up"
    except OSError:
        pass
    with Netlink() as nl:
        return nl.get_link_by_index(index).operstate == "UP"


def _wait_oper_up(host: str, index: int) -> None:
    # Go sleeps 0/50/500/1000/1000 ms; a veth whose peer is up is oper-up at once,
    # so poll finely and give up after the same total.
    deadline = time.monotonic() + 2.55
    while not _oper_up(host, index):
        if time.monotonic() > deadline:
            raise Internal(f"bridge port in error state: {host}")
        time.sleep(0.002)


def cmd_add(args: CmdArgs) -> Result:
    n = load_conf(args)
    layer3 = bool(n.ipam_type)
    if layer3 and n.disable_container_iface:
        raise InvalidConfig("cannot use IPAM when DisableContainerInterface flag is set")
    if n.hairpin and n.promisc:
        raise InvalidConfig("cannot set hairpin mode and promiscuous mode at the same time")
    _check_kernel_vlan(n)
    try:
        netns_fd = open_netns(args.netns_path)
    except NetnsNotFound as e:
        raise Internal(f"failed to open netns {args.netns!r}", e.details) from e
    with ExitStack() as cleanup, ExitStack() as undo:
        cleanup.callback(os.close, netns_fd)
        br = _ensure_bridge(n)
        reaper.wait_for(args.netns_path, args.ifname)
        cont_mac = n.mac or random_mac()
        try:
            host, host_index, host_mac = _setup_veth(n, br, netns_fd, args.ifname, cont_mac, undo)
        except LinkNotFound:
            br = _ensure_bridge(n)
            host, host_index, host_mac = _setup_veth(n, br, netns_fd, args.ifname, cont_mac, undo)
        result = Result(
            cni_version=n.cni_version,
            interfaces=[
                Interface(name=br.name, mac=br.mac),
                Interface(name=host, mac=host_mac),
                Interface(name=args.ifname, mac=cont_mac, sandbox=args.netns),
            ],
        )
        if n.macspoofchk:
            from kanal.firewall import MacSpoofCheck, apply_mac_spoof_check

            chk = MacSpoofCheck(host, cont_mac, f"{args.container_id}-{args.ifname}")
            apply_mac_spoof_check(chk)
            undo.callback(_teardown_spoofchk, args)
        if layer3:
            ipam = delegate("ADD", n.ipam_type, args)
            assert ipam is not None
            undo.callback(_ipam_del_quiet, n, args)
            result.ips, result.routes, result.dns = ipam.ips, ipam.routes, ipam.dns
            if not result.ips:
                raise Internal("IPAM plugin returned missing IP config")
            gws = _calc_gateways(result, n)

            def container_side(batch: Batch) -> None:
                prepare_sysctls(
                    args.ifname, enable_dad=n.enable_dad, accept_dad=False, arp_notify=True
                )
                configure_iface(batch, args.ifname, result, nodad=not n.enable_dad)

            in_container_fd(netns_fd, container_side)
            if n.is_gw:
                target = br
                if n.vlan:
                    vl = _ensure_vlan_iface(n, br, netns_fd, result, undo)
                    target = _Bridge(vl.index, vl.name, vl.mac, pinned=False)
                for fam in (4, 6):
                    for gw in gws[fam]:
                        _ensure_gateway(target, gw, n.force_address)
                    if gws[fam]:
                        _enable_forward(fam)
            if n.ip_masq:
                from kanal.firewall import Masquerade, Owner, get_backend

                owner = Owner(n.name, args.container_id, args.ifname)
                rules = [
                    Masquerade(owner, ipc.address.ip, ipc.address.network) for ipc in result.ips
                ]
                undo.callback(_masq_teardown_quiet, owner)
                get_backend(n.ip_masq_backend).add_masquerade(rules)
        elif not n.disable_container_iface:

            def l2_up(batch: Batch) -> None:
                batch.set_link(index=socket.if_nametoindex(args.ifname), up=True)
                batch.commit()

            in_container_fd(netns_fd, l2_up)
        if not n.disable_container_iface:
            _wait_oper_up(host, host_index)
        # The bridge's MAC after its new port (and gateway), as Go reads it again.
        result.interfaces[0].mac = _current_mac(br)
        # Go's bridge returns its own netconf dns only, never the IPAM plugin's.
        result.dns = n.dns if n.dns is not None else DNS()
        undo.pop_all()
        return result
    raise AssertionError("unreachable")


def _ensure_vlan_iface(
    n: BridgeConf, br: _Bridge, own_fd: int, result: Result, undo: ExitStack
) -> Link:
    """Go ensureVlanInterface: a veth ``<bridge>.<vlan>`` in the host namespace whose
    peer is an untagged port of the VLAN; the gateway address goes on it."""
    name = f"{n.br_name}.{n.vlan}"
    with Netlink() as nl:
        link = nl.find_link(name)
        if link is None:
            own = open_netns(f"/proc/self/task/{_thread.get_native_id()}/ns/net")
            try:
                _setup_veth(n, br, own, name, random_mac(), undo, vlan=n.vlan)
            finally:
                os.close(own)
            link = nl.get_link(name)
            nl.set_up(link.index)
    if not any(i.name == link.name for i in result.interfaces):
        result.interfaces.append(Interface(name=link.name, mac=link.mac))
    return link


def _ipam_del_quiet(n: BridgeConf, args: CmdArgs) -> None:
    try:
        delegate("DEL", n.ipam_type, args)
    except KanalError:
        pass


def _masq_teardown_quiet(owner: Any) -> None:
    from kanal.firewall import teardown_masquerade

    try:
        teardown_masquerade(owner)
    except KanalError:
        pass


def _teardown_spoofchk(args: CmdArgs) -> None:
    from kanal.firewall import teardown_mac_spoof_check

    try:
        teardown_mac_spoof_check(f"{args.container_id}-{args.ifname}")
    except KanalError:
        pass


def cmd_del(args: CmdArgs) -> None:
    """Idempotent: a missing netns, link or reservation is success.

    Host-side state (masquerade, spoof check) is removed by (network, container,
    ifname) whether or not the netns still exists (the Go plugin leaks it: #810).
    """
    n = load_conf(args, lenient=True)
    del_attachment(
        args,
        network=n.name,
        ipam_type=n.ipam_type,
        spoof_id=f"{args.container_id}-{args.ifname}" if n.macspoofchk else None,
    )


def cmd_check(args: CmdArgs) -> None:
    n = load_conf(args)
    if n.ipam_type:
        delegate("CHECK", n.ipam_type, args)
    result = c.prev_result(n.conf, args)
    if result is None:
        raise InvalidConfig("Required prevResult missing")
    br_if = next((i for i in result.interfaces if i.name == n.br_name), None)
    cont_if = next(
        (i for i in result.interfaces if i.name == args.ifname and i.sandbox == args.netns), None
    )
    with Netlink() as nl:
        if br_if is None:
            raise NotFound(f"CNI created bridge {n.br_name} in host namespace was not found")
        br = nl.find_link(br_if.name)
        if br is None:
            raise NotFound(f"Interface name {br_if.name} not found")
        if br.kind != "bridge":
            raise Internal(f"Interface {br_if.name} does not have link type of bridge")
        if br_if.mac and br_if.mac != br.mac:
            raise Internal(f"Bridge interface {br_if.name} Mac doesn't match: {br_if.mac}")
        if bool(br.promiscuity) != n.promisc:
            raise Internal(
                f"Bridge interface {br_if.name} configured Promisc Mode {n.promisc} "
                f"doesn't match current state: {bool(br.promiscuity)}"
            )
        if cont_if is None:
            raise Internal(f"Sandbox in prevResult  doesn't match configured netns: {args.netns}")

        def cont_state(cnl: Netlink) -> tuple[Link, int]:
            link = cnl.find_link(args.ifname)
            if link is None:
                raise NotFound(f"Interface name {args.ifname} not found")
            if link.kind != "veth":
                raise Internal(f"Error: Container interface {link.name} not of type veth")
            if cont_if.mac and cont_if.mac != link.mac:
                raise Internal(
                    f"Interface {link.name} Mac {cont_if.mac} doesn't match "
                    f"container Mac: {link.mac}"
                )
            validate_expected_ips(cnl, args.ifname, result)
            validate_expected_routes(cnl, result)
            return link, link.peer_index

        try:
            cont, peer_index = in_container(args.netns_path, cont_state)
        except NetnsNotFound as e:
            raise Internal(f"failed to open netns {args.netns!r}", e.details) from e
        veth = nl.find_link_by_index(peer_index)
        if veth is None or veth.master != br.index or veth.peer_index != cont.index:
            raise NotFound(f"CNI veth created for bridge {n.br_name} was not found")
        host_if = next((i for i in result.interfaces if i.name == veth.name), None)
        if host_if is not None and host_if.mac and host_if.mac != veth.mac:
            raise Internal(f"Interface {veth.name} Mac doesn't match: {host_if.mac} not found")
    if n.ip_masq and n.ipam_type:
        from kanal.firewall import Masquerade, Owner, get_backend

        owner = Owner(n.name, args.container_id, args.ifname)
        get_backend(n.ip_masq_backend).check_masquerade(
            [Masquerade(owner, ipc.address.ip, ipc.address.network) for ipc in result.ips]
        )


def cmd_status(args: CmdArgs) -> None:
    n = load_conf(args)
    if n.ipam_type:
        delegate("STATUS", n.ipam_type, args)


def cmd_gc(args: CmdArgs) -> None:
    """Drop masquerade entries of attachments not listed as valid, then GC IPAM."""
    n = load_conf(args)
    gc_attachments(args, network=n.name, ipam_type=n.ipam_type)


PLUGIN = PluginFuncs(
    about="kanal bridge plugin",
    versions=ALL_VERSIONS,
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    status=cmd_status,
    gc=cmd_gc,
)


def main() -> None:
    from kanal.skel.dispatcher import plugin_main

    plugin_main(PLUGIN)
