"""The ``ptp`` CNI plugin: a point-to-point veth with the host as the gateway.

As the reference: the container gets its address, a link route to the gateway
and the subnet via the gateway; the host end carries the gateway address (/32 or
/128) and a host route to the container.
"""

from __future__ import annotations

import ipaddress
import os
from contextlib import ExitStack
from typing import Any

from kanal.errors import Internal, InvalidConfig, KanalError
from kanal.netlink import reaper
from kanal.netlink.batch import Batch, raw_socket
from kanal.netlink.bridgeport import del_link_quiet
from kanal.netlink.handle import Netlink
from kanal.netlink.ns import NetnsNotFound, open_netns
from kanal.netlink.steps import (
    add_veth_pair,
    configure_iface,
    enable_forward,
    has_ipv6,
    in_container,
    in_container_fd,
    prepare_sysctls,
    random_mac,
    try_sysctl,
    validate_expected_ips,
    validate_expected_routes,
)
from kanal.netlink.wire import RT_SCOPE_HOST, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE
from kanal.plugins import _conf as c
from kanal.plugins._iface import del_attachment, gc_attachments, prev_container
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.skel.delegate import delegate
from kanal.skel.dispatcher import plugin_main
from kanal.spec import gotypes
from kanal.spec.gojson import BOOL, INT, STRING, Ptr
from kanal.spec.types import DNS, Interface, Result
from kanal.spec.versions import ALL_VERSIONS

__all__ = ["PLUGIN", "main"]


NETCONF = gotypes.NETCONF.extend(
    "NetConf", [("ipMasq", BOOL), ("ipMasqBackend", Ptr(STRING)), ("mtu", INT)]
)


def _conf(args: CmdArgs, *, lenient: bool = False) -> tuple[str, bool, str | None, int, DNS | None]:
    """(ipam type, ipMasq, ipMasqBackend, mtu, dns); ``lenient`` for DEL (no checks)."""
    conf = c.load(NETCONF, args, lenient=lenient)
    ipam_type: str = conf["ipam"]["type"]
    backend: str | None = conf["ipMasqBackend"]
    if not lenient:
        if not ipam_type:
            raise InvalidConfig('ptp needs an "ipam" section with a type')
        if backend is not None and backend not in ("iptables", "nftables"):
            raise InvalidConfig(f"unknown ipMasqBackend {backend!r}")
    return ipam_type, conf["ipMasq"], backend, conf["mtu"], c.dns_of(conf)


def cmd_add(args: CmdArgs) -> Result:
    ipam_type, ip_masq, backend, mtu, dns = _conf(args)
    name: str = c.load(NETCONF, args)["name"]
    with ExitStack() as cleanup, ExitStack() as undo:
        result = delegate("ADD", ipam_type, args)
        assert result is not None
        undo.callback(_quiet, lambda: delegate("DEL", ipam_type, args))
        if not result.ips:
            raise Internal("IPAM plugin returned missing IP config")
        for ipc in result.ips:
            if ipc.gateway is None:
                raise InvalidConfig(f"ptp needs a gateway for {ipc.address} from IPAM")
            ipc.interface = 1
        for fam in {ipc.address.version for ipc in result.ips}:
            enable_forward(fam)
        try:
            netns_fd = open_netns(args.netns_path)
        except NetnsNotFound as e:
            raise Internal(f"failed to open netns {args.netns!r}", e.details) from e
        cleanup.callback(os.close, netns_fd)
        sock = cleanup.enter_context(raw_socket())
        reaper.wait_for(args.netns_path, args.ifname)
        cont_mac = random_mac()
        host_name, host_index, host_mac = add_veth_pair(
            sock, netns_fd, args.ifname, cont_mac, mtu=mtu
        )
        undo.callback(del_link_quiet, host_index)
        try_sysctl(f"net/ipv6/conf/{host_name}/accept_ra", "0")
        result.interfaces = [
            Interface(name=host_name, mac=host_mac),
            Interface(name=args.ifname, mac=cont_mac, sandbox=args.netns),
        ]
        in_container_fd(netns_fd, lambda batch: _container_side(batch, args.ifname, result))
        _host_side(Batch(sock), host_index, result)
        if ip_masq:
            # lazy: only with ipMasq: the firewall layer is several modules an exec need not load
            from kanal.firewall import Masquerade, Owner, get_backend

            owner = Owner(name, args.container_id, args.ifname)
            undo.callback(_quiet, lambda: _masq_teardown(owner))
            get_backend(backend).add_masquerade(
                [Masquerade(owner, ipc.address.ip, ipc.address.network) for ipc in result.ips]
            )
        if dns is not None:
            result.dns = dns
        undo.pop_all()
        return result
    raise AssertionError("unreachable")


def _container_side(batch: Batch, ifname: str, result: Result) -> None:
    """In the container: the addresses, a link route to each gateway, the subnet
    via the gateway (instead of the kernel's prefix route)."""
    prepare_sysctls(ifname, accept_dad=not has_ipv6(result))
    index = configure_iface(batch, ifname, result, nodad=True)
    for ipc in result.ips:
        assert ipc.gateway is not None
        bits = 32 if ipc.address.version == 4 else 128
        batch.del_route(ipc.address.network, oif=index)
        batch.add_route(
            ipaddress.ip_network(f"{ipc.gateway}/{bits}"),
            oif=index,
            scope=RT_SCOPE_LINK,
            src=ipc.address.ip,
        )
        batch.add_route(
            ipc.address.network,
            gateway=ipc.gateway,
            oif=index,
            scope=RT_SCOPE_UNIVERSE,
            src=ipc.address.ip,
        )
    batch.commit()


def _host_side(b: Batch, host_index: int, result: Result) -> None:
    """On the host end: each gateway address (/32 or /128) and a host route to the
    container's address."""
    for ipc in result.ips:
        assert ipc.gateway is not None
        bits = 32 if ipc.address.version == 4 else 128
        b.add_addr(
            host_index,
            ipaddress.ip_interface(f"{ipc.gateway}/{bits}"),
            nodad=True,
            exist_ok=True,
        )
        b.add_route(
            ipaddress.ip_network(f"{ipc.address.ip}/{bits}"),
            oif=host_index,
            scope=RT_SCOPE_HOST,  # as Go's ip.AddHostRoute
            exist_ok=True,
        )
    b.commit()


def _masq_teardown(owner: Any) -> None:
    # lazy: only with ipMasq: the firewall layer is several modules an exec need not load
    from kanal.firewall import teardown_masquerade

    teardown_masquerade(owner)


def _quiet(fn: Any) -> None:
    try:
        fn()
    except KanalError:
        pass


def cmd_del(args: CmdArgs) -> None:
    """Idempotent; masquerade is removed by attachment even without the netns."""
    ipam_type = _conf(args, lenient=True)[0]
    name = c.load(NETCONF, args, lenient=True)["name"]
    del_attachment(args, network=name, ipam_type=ipam_type)


def cmd_check(args: CmdArgs) -> None:
    ipam_type, ip_masq, backend, _, _ = _conf(args)
    delegate("CHECK", ipam_type, args)
    result, cont_if = prev_container(args)

    def check(cnl: Netlink) -> None:
        link = cnl.find_link(args.ifname)
        if link is None:
            raise Internal(f"Interface name {args.ifname} not found")
        if link.kind != "veth":
            raise Internal(f"Error: Container interface {link.name} not of type veth/p2p")
        if cont_if.mac and cont_if.mac != link.mac:
            raise Internal(
                f"Interface {link.name} Mac {cont_if.mac} doesn't match "
                f"container Mac: {link.mac}"
            )
        validate_expected_ips(cnl, args.ifname, result)
        validate_expected_routes(cnl, result)

    try:
        in_container(args.netns_path, check)
    except NetnsNotFound as e:
        raise Internal(f"failed to open netns {args.netns!r}", e.details) from e
    if ip_masq:
        # lazy: only with ipMasq: the firewall layer is several modules an exec need not load
        from kanal.firewall import Masquerade, Owner, get_backend

        owner = Owner(c.load(NETCONF, args)["name"], args.container_id, args.ifname)
        get_backend(backend).check_masquerade(
            [Masquerade(owner, ipc.address.ip, ipc.address.network) for ipc in result.ips]
        )


def cmd_status(args: CmdArgs) -> None:
    ipam_type = _conf(args)[0]
    delegate("STATUS", ipam_type, args)


def cmd_gc(args: CmdArgs) -> None:
    """Drop masquerade entries of attachments not listed as valid, then GC IPAM."""
    gc_attachments(args, network=c.load(NETCONF, args)["name"], ipam_type=_conf(args)[0])


PLUGIN = PluginFuncs(
    about="kanal ptp plugin",
    versions=ALL_VERSIONS,
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    status=cmd_status,
    gc=cmd_gc,
)


def main() -> None:
    plugin_main(PLUGIN)
