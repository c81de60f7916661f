"""The ``bridge`` CNI plugin: a veth pair from the container to a Linux bridge.

Spec-exact replacement of the reference plugin (docs/cni-spec.md §2). Differences that
are deliberate: the veth is created from the host with its peer made directly in
the container namespace (one kernel operation, no move); IPv6 addresses are added
without DAD unless ``enabledad`` (no settle wait); DEL removes masquerade state
by (network, container, ifname) even when the netns is gone (plugins#810); GC
drops masquerade entries of attachments that are no longer valid.
"""

from __future__ import annotations

import _socket as socket  # if_nametoindex, without socket's own ~5 ms import
import _thread
import ipaddress
import os
from contextlib import ExitStack

from kanal._dataclass import dataclass, field
from kanal.errors import Internal, InvalidConfig, KanalError, NotFound
from kanal.netlink import reaper
from kanal.netlink.batch import Batch
from kanal.netlink.bridgeport import (
    Bridge,
    PortOptions,
    current_mac,
    ensure_bridge,
    ensure_gateway,
    setup_veth,
    vlan_filtering_supported,
    wait_oper_up,
)
from kanal.netlink.handle import Link, LinkNotFound, Netlink
from kanal.netlink.ns import NetnsNotFound, open_netns
from kanal.netlink.steps import (
    configure_iface,
    enable_forward,
    in_container,
    in_container_fd,
    prepare_sysctls,
    random_mac,
    validate_expected_ips,
    validate_expected_routes,
)
from kanal.plugins import _conf as c
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.skel.delegate import delegate
from kanal.skel.dispatcher import plugin_main
from kanal.spec import gotypes
from kanal.spec.args import load_args
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


def load_conf(args: CmdArgs, *, lenient: bool = False) -> BridgeConf:
    """Parse and validate the config (and the MAC from CNI_ARGS/args/runtimeConfig).

    ``lenient`` (DEL): Go's decode errors and the checks below are skipped; only
    what teardown needs (name, ipam type, macspoofchk) matters then.
    """
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
        n.vlans = c.vlan_trunk(conf["vlanTrunk"])
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
    if (n.vlan or n.vlan_trunk_set) and not vlan_filtering_supported():
        raise InvalidConfig(
            "bridge VLAN filtering (vlan/vlanTrunk) is not supported by this kernel"
        )


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


def _ensure_bridge(n: BridgeConf) -> Bridge:
    return ensure_bridge(
        n.br_name, mtu=n.mtu, vlan_filtering=bool(n.vlan or n.vlans), promisc=n.promisc
    )


def _port(n: BridgeConf, vlan: int = 0) -> PortOptions:
    """The bridge port of a veth: the config's VLANs, or only ``vlan`` when given."""
    return PortOptions(
        mtu=n.mtu,
        hairpin=n.hairpin,
        isolated=n.port_isolation,
        vlan=vlan or n.vlan,
        vlans=() if vlan else tuple(n.vlans),
        preserve_default_vlan=n.preserve_default_vlan,
    )


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
            host, host_index, host_mac = setup_veth(
                br, netns_fd, args.ifname, cont_mac, undo, _port(n)
            )
        except LinkNotFound:
            br = _ensure_bridge(n)
            host, host_index, host_mac = setup_veth(
                br, netns_fd, args.ifname, cont_mac, undo, _port(n)
            )
        result = Result(
            cni_version=n.cni_version,
            interfaces=[
                Interface(name=br.name, mac=br.mac),
                Interface(name=host, mac=host_mac),
                Interface(name=args.ifname, mac=cont_mac, sandbox=args.netns),
            ],
        )
        if n.macspoofchk:
            # lazy: only with macspoofchk (the firewall layer)
            from kanal.firewall import MacSpoofCheck, apply_mac_spoof_check

            chk = MacSpoofCheck(host, cont_mac, f"{args.container_id}-{args.ifname}")
            apply_mac_spoof_check(chk)
            undo.callback(_teardown_spoofchk, args)
        if layer3:
            _add_layer3(n, args, br, netns_fd, result, undo)
        elif not n.disable_container_iface:

            def l2_up(batch: Batch) -> None:
                batch.set_link(index=socket.if_nametoindex(args.ifname), up=True)
                batch.commit()

            in_container_fd(netns_fd, l2_up)
        if not n.disable_container_iface:
            wait_oper_up(host, host_index)
        # The bridge's MAC after its new port (and gateway), as Go reads it again.
        result.interfaces[0].mac = current_mac(br)
        # Go's bridge returns its own netconf dns only, never the IPAM plugin's.
        result.dns = n.dns if n.dns is not None else DNS()
        undo.pop_all()
        return result
    raise AssertionError("unreachable")


def _add_layer3(
    n: BridgeConf, args: CmdArgs, br: Bridge, netns_fd: int, result: Result, undo: ExitStack
) -> None:
    """ADD's IPAM half: addresses and routes in the container, the gateway on the
    bridge (or its VLAN interface), forwarding, masquerade; undone by ``undo``."""
    ipam = delegate("ADD", n.ipam_type, args)
    assert ipam is not None
    undo.callback(_ipam_del_quiet, n, args)
    result.ips, result.routes, result.dns = ipam.ips, ipam.routes, ipam.dns
    if not result.ips:
        raise Internal("IPAM plugin returned missing IP config")
    gws = _calc_gateways(result, n)

    def container_side(batch: Batch) -> None:
        prepare_sysctls(args.ifname, enable_dad=n.enable_dad, accept_dad=False, arp_notify=True)
        configure_iface(batch, args.ifname, result, nodad=not n.enable_dad)

    in_container_fd(netns_fd, container_side)
    if n.is_gw:
        target = br
        if n.vlan:
            vl = _ensure_vlan_iface(n, br, netns_fd, result, undo)
            target = Bridge(vl.index, vl.name, vl.mac, pinned=False)
        for fam in (4, 6):
            for gw in gws[fam]:
                ensure_gateway(target, gw, n.force_address)
            if gws[fam]:
                enable_forward(fam)
    if n.ip_masq:
        # lazy: only with ipMasq: the firewall layer is several modules an exec need not load
        from kanal.firewall import Masquerade, Owner, get_backend

        owner = Owner(n.name, args.container_id, args.ifname)
        rules = [Masquerade(owner, ipc.address.ip, ipc.address.network) for ipc in result.ips]
        undo.callback(_masq_teardown_quiet, owner)
        get_backend(n.ip_masq_backend).add_masquerade(rules)


def _ensure_vlan_iface(
    n: BridgeConf, br: Bridge, own_fd: int, result: Result, undo: ExitStack
) -> Link:
    """Go ensureVlanInterface: a veth ``<bridge>.<vlan>`` in the host namespace whose
    peer is an untagged port of the VLAN; the gateway address goes on it."""
    name = f"{n.br_name}.{n.vlan}"
    with Netlink() as nl:
        link = nl.find_link(name)
        if link is None:
            own = open_netns(f"/proc/self/task/{_thread.get_native_id()}/ns/net")
            try:
                setup_veth(br, own, name, random_mac(), undo, _port(n, vlan=n.vlan))
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
    # lazy: only with ipMasq: the firewall layer is several modules an exec need not load
    from kanal.firewall import teardown_masquerade

    try:
        teardown_masquerade(owner)
    except KanalError:
        pass


def _teardown_spoofchk(args: CmdArgs) -> None:
    # lazy: only with macspoofchk (the firewall layer)
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
    from kanal.plugins._iface import del_attachment  # lazy: DEL only, an ADD need not load it

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
        # lazy: only with ipMasq: the firewall layer is several modules an exec need not load
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
    from kanal.plugins._iface import gc_attachments  # lazy: GC only, an ADD need not load it

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
    plugin_main(PLUGIN)
