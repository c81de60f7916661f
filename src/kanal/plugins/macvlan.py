"""The ``macvlan`` CNI plugin: a macvlan of a host link, inside the container.

As the reference (docs/cni-spec.md §2; Go ``plugins/main/macvlan``): ``master`` (default:
the link of the host's default route), ``mode`` bridge|private|vepa|passthru
(default bridge), ``mtu`` (0 = the master's; at most the master's), the MAC from
``mac``, CNI_ARGS ``MAC`` or ``runtimeConfig.mac`` (last wins), ``ipam``
optional (without it the link is only brought up), ``linkInContainer`` (the
master lives in the container's namespace). The link is created directly in the
container namespace under its final name (Go makes it in the host under a
temporary name, moves and renames it); ``arp_notify`` makes the kernel announce
the address when the link comes up. DEL releases the addresses, then removes the
link; it is idempotent and needs no netns.

On this kernel a macvlan cannot sit on a bridge port (EBUSY): use the bridge itself
or another link as the master.
"""

from __future__ import annotations

import os
import socket
from contextlib import ExitStack

from kanal.errors import Conflict, Internal, InvalidConfig, KanalError, NotFound
from kanal.netlink.batch import Batch, raw_socket
from kanal.netlink.handle import Netlink
from kanal.netlink.ns import NetnsNotFound, open_netns, run_in_netns
from kanal.netlink.steps import (
    in_container,
    in_container_fd,
    validate_expected_ips,
    validate_expected_routes,
)
from kanal.netlink.wire import MACVLAN_MODES
from kanal.plugins import _conf as c
from kanal.plugins._iface import add_addresses, prev_container, release_then
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.skel.delegate import delegate
from kanal.skel.dispatcher import plugin_main
from kanal.spec import gotypes
from kanal.spec.args import load_args
from kanal.spec.gojson import BOOL, INT, STRING
from kanal.spec.types import DNS, Interface, Result
from kanal.spec.versions import ALL_VERSIONS

__all__ = ["PLUGIN", "main"]


NETCONF = gotypes.NETCONF.extend(
    "NetConf",
    [
        ("master", STRING),
        ("mode", STRING),
        ("mtu", INT),
        ("mac", STRING),
        ("linkInContainer", BOOL),
        ("runtimeConfig", c.MAC_ONLY),
    ],
)


class MacvlanConf:
    """The config, checked; ``lenient`` (DEL): no checks (only ipam type is used)."""

    def __init__(self, args: CmdArgs, *, lenient: bool = False) -> None:
        conf = c.load(NETCONF, args, lenient=lenient)
        self.conf = conf
        self.master: str = conf["master"]
        self.mode: str = conf["mode"] or "bridge"
        self.mtu: int = conf["mtu"]
        self.link_in_container: bool = conf["linkInContainer"]
        self.ipam_type: str = conf["ipam"]["type"]
        self.dns = c.dns_of(conf)
        self.mac = ""
        if lenient:
            return
        if self.mode not in MACVLAN_MODES or self.mode == "source":
            raise InvalidConfig(f'unknown macvlan mode: "{self.mode}"')
        if self.mtu < 0:
            raise InvalidConfig(f"invalid MTU {self.mtu}")
        mac: str = conf["mac"]
        if args.args:
            env = load_args(args.args, ("MAC",))
            mac = env.get("MAC") or mac
        mac = conf["runtimeConfig"]["mac"] or mac
        self.mac = c.valid_mac(mac) if mac else ""


def default_route_link() -> str:
    """The link of the (first) IPv4 default route in this namespace."""
    with Netlink() as nl:
        for r in nl.routes(family=socket.AF_INET, table=254):
            if r.dst.prefixlen == 0 and r.oif:
                return nl.get_link_by_index(r.oif).name
    raise NotFound('failed to find the default route interface: set "master"')


def _master(m: MacvlanConf) -> tuple[int, int]:
    """(index, mtu) of the master, looked up where it lives."""
    name = m.master or default_route_link()
    with Netlink() as nl:
        link = nl.find_link(name)
    if link is None:
        raise NotFound(f'failed to lookup master "{name}": Link not found')
    return link.index, link.mtu


def cmd_add(args: CmdArgs) -> Result:
    m = MacvlanConf(args)
    try:
        netns_fd = open_netns(args.netns_path)
    except NetnsNotFound as e:
        raise Internal(f"failed to open netns {args.netns!r}", e.details) from e
    with ExitStack() as cleanup, ExitStack() as undo:
        cleanup.callback(os.close, netns_fd)
        if m.link_in_container:
            if not m.master:
                raise InvalidConfig('"linkInContainer" needs "master"')
            master, master_mtu = run_in_netns(netns_fd, lambda: _master(m))
        else:
            master, master_mtu = _master(m)
        if m.mtu > master_mtu:
            raise InvalidConfig(f"invalid MTU {m.mtu}, must be [0, master MTU({master_mtu})]")

        def create(b: Batch) -> None:
            b.add_macvlan(
                args.ifname,
                master,
                m.mode,
                netns_fd=-1 if m.link_in_container else netns_fd,
                mac=m.mac,
                mtu=m.mtu,
                txqlen=0,  # as Go's netlink library makes a macvlan
            )
            try:
                b.commit()
            except Conflict:
                raise Conflict(f"container interface {args.ifname} already exists") from None

        if m.link_in_container:
            in_container_fd(netns_fd, create)
        else:
            with raw_socket() as s:
                create(Batch(s))
        undo.callback(_del_quiet, netns_fd, args.ifname)

        # Not /sys: it shows the namespace it was mounted in, not the thread's.
        mac = m.mac or in_container(args.netns_path, lambda nl: nl.get_link(args.ifname).mac)
        result = Result(
            cni_version=args.cni_version,
            interfaces=[Interface(name=args.ifname, mac=mac, sandbox=args.netns)],
        )
        add_addresses(args, m.ipam_type, netns_fd, result, undo, arp_notify=True)
        # Go's macvlan returns its own netconf dns only, never the IPAM plugin's.
        result.dns = m.dns if m.dns is not None else DNS()
        undo.pop_all()
        return result
    raise AssertionError("unreachable")


def _quiet(fn: object) -> None:
    try:
        fn()  # type: ignore[operator]
    except KanalError:
        pass


def _del_quiet(netns_fd: int, ifname: str) -> None:
    def work(b: Batch) -> None:
        b.del_link(name=ifname)
        try:
            b.commit()
        except KanalError:
            pass

    in_container_fd(netns_fd, work)


def cmd_del(args: CmdArgs) -> None:
    m = MacvlanConf(args, lenient=True)
    release_then(args, m.ipam_type, lambda fd: _del_quiet(fd, args.ifname))


def cmd_check(args: CmdArgs) -> None:
    m = MacvlanConf(args)
    if m.ipam_type:
        delegate("CHECK", m.ipam_type, args)
    result, cont = prev_container(args)

    def check(nl: Netlink) -> None:
        link = nl.find_link(args.ifname)
        if link is None:
            raise Internal(f"Cannot find container link {args.ifname}")
        if link.kind != "macvlan":
            raise Internal(f"Container interface {args.ifname} is not a macvlan")
        mode = nl.macvlan_mode(link.index)
        if mode != m.mode:
            raise Internal(f"Container macvlan mode {mode} does not match expected value: {m.mode}")
        if cont.mac and cont.mac != link.mac:
            raise Internal(f"Interface {link.name} Mac {cont.mac} doesn't match: {link.mac}")
        validate_expected_ips(nl, args.ifname, result)
        validate_expected_routes(nl, result)

    try:
        in_container(args.netns_path, check)
    except NetnsNotFound as e:
        raise Internal(f"failed to open netns {args.netns!r}", e.details) from e


def cmd_status(args: CmdArgs) -> None:
    m = MacvlanConf(args)
    if m.ipam_type:
        delegate("STATUS", m.ipam_type, args)


def cmd_gc(args: CmdArgs) -> None:
    m = MacvlanConf(args)
    if m.ipam_type:
        delegate("GC", m.ipam_type, args)


PLUGIN = PluginFuncs(
    about="kanal macvlan plugin",
    versions=ALL_VERSIONS,
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    status=cmd_status,
    gc=cmd_gc,
)


def main() -> None:
    plugin_main(PLUGIN)
