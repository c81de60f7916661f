"""The ``ptp`` CNI plugin: a point-to-point veth with the host as the gateway.

As the reference: the container gets its address, a link route to the gateway
and the subnet via the gateway; the host end carries the gateway address (/32 or
/128) and a host route to the container.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
from contextlib import ExitStack
from typing import Any

from kanal.errors import Conflict, Internal, InvalidConfig, KanalError
from kanal.netlink import reaper
from kanal.netlink.batch import Batch, raw_socket
from kanal.netlink.handle import Netlink
from kanal.netlink.ns import NetnsNotFound, open_netns
from kanal.netlink.steps import (
    configure_iface,
    has_ipv6,
    in_container,
    in_container_fd,
    prepare_sysctls,
    random_mac,
    validate_expected_ips,
    validate_expected_routes,
)
from kanal.netlink.sysctl import read_sysctl, write_sysctl
from kanal.netlink.wire import RT_SCOPE_HOST, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE
from kanal.plugins import _conf as c
from kanal.plugins._iface import del_attachment, gc_attachments, prev_container
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.skel.delegate import delegate
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


def _enable_forward(families: set[int]) -> None:
    for fam in families:
        key = "net/ipv4/ip_forward" if fam == 4 else "net/ipv6/conf/all/forwarding"
        if read_sysctl(key) != "1":
            write_sysctl(key, "1")


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
        _enable_forward({ipc.address.version for ipc in result.ips})
        try:
            netns_fd = open_netns(args.netns_path)
        except NetnsNotFound as e:
            raise Internal(f"failed to open netns {args.netns!r}", e.details) from e
        cleanup.callback(os.close, netns_fd)
        sock = cleanup.enter_context(raw_socket())
        reaper.wait_for(args.netns_path, args.ifname)
        cont_mac = random_mac()
        for _ in range(10):
            host_name, host_mac = "veth" + secrets.token_hex(4), random_mac()
            b = Batch(sock)
            b.add_veth(
                host_name,
                args.ifname,
                netns_fd,
                mac=host_mac,
                peer_mac=cont_mac,
                mtu=mtu,
                up=True,
                txqlen=0,  # as Go's netlink library makes a veth
            )
            try:
                b.commit()
                break
            except Conflict:
                try:
                    socket.if_nametoindex(host_name)
                    continue  # the random host name collided; try another
                except OSError:
                    raise Conflict(
                        f"container veth name provided ({args.ifname}) " "already exists"
                    ) from None
        else:
            raise Internal("failed to find a unique veth name")
        host_index = socket.if_nametoindex(host_name)
        undo.callback(_quiet, lambda: _del_link(host_index))
        try:
            write_sysctl(f"net/ipv6/conf/{host_name}/accept_ra", "0")
        except KanalError:
            pass
        result.interfaces = [
            Interface(name=host_name, mac=host_mac),
            Interface(name=args.ifname, mac=cont_mac, sandbox=args.netns),
        ]

        def container_side(batch: Batch) -> None:
            prepare_sysctls(args.ifname, accept_dad=not has_ipv6(result))
            index = configure_iface(batch, args.ifname, result, nodad=True)
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

        in_container_fd(netns_fd, container_side)
        b = Batch(sock)
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
        if ip_masq:
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


def _del_link(index: int) -> None:
    with raw_socket() as s:
        b = Batch(s)
        b.del_link(index=index)
        b.commit()


def _masq_teardown(owner: Any) -> None:
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
    from kanal.skel.dispatcher import plugin_main

    plugin_main(PLUGIN)
