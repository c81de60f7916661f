"""The ``tap`` CNI plugin: a tap device inside the container (for VMs in pods).

As the upstream Go plugin (``plugins/main/tap``, not in Debian's 1.1 build):
``mac``, ``mtu``, ``multiQueue``, ``owner``/``group`` (uid/gid allowed to open
it), ``bridge`` (a bridge *inside the container namespace* to attach it to),
``selinuxcontext`` (accepted; this machine has no SELinux, so it is ignored),
optional ``ipam``. The device is persistent; DEL removes it (idempotent, no netns
needed).
"""

from __future__ import annotations

import os
from contextlib import ExitStack

from kanal.errors import Internal, InvalidConfig, NotFound
from kanal.netlink.batch import Batch, raw_socket
from kanal.netlink.bridgeport import del_link_quiet
from kanal.netlink.handle import Netlink
from kanal.netlink.ns import NetnsNotFound, open_netns, run_in_netns
from kanal.netlink.steps import in_container, validate_expected_ips
from kanal.netlink.tuntap import create_tap
from kanal.plugins import _conf as c
from kanal.plugins._iface import add_addresses
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.skel.delegate import delegate
from kanal.skel.dispatcher import plugin_main
from kanal.spec import gotypes
from kanal.spec.args import load_args
from kanal.spec.gojson import BOOL, INT, STRING, UINT32, Ptr, Struct
from kanal.spec.types import DNS, Interface, Result
from kanal.spec.versions import ALL_VERSIONS

__all__ = ["PLUGIN", "main"]


NETCONF = gotypes.NETCONF.extend(
    "NetConf",
    [
        ("multiQueue", BOOL),
        ("mtu", INT),
        ("mac", STRING),
        ("owner", Ptr(UINT32)),
        ("group", Ptr(UINT32)),
        ("selinuxContext", STRING),
        ("bridge", STRING),
        ("args", Ptr(Struct("", [], pkg=""))),
        ("runtimeConfig", c.MAC_ONLY),
    ],
)


class TapConf:
    """The config, checked; ``lenient`` (DEL): no checks."""

    def __init__(self, args: CmdArgs, *, lenient: bool = False) -> None:
        conf = c.load(NETCONF, args, lenient=lenient)
        self.conf = conf
        self.mtu: int = conf["mtu"]
        self.multi_queue: bool = conf["multiQueue"]
        self.owner: int | None = conf["owner"]
        self.group: int | None = conf["group"]
        self.bridge: str = conf["bridge"]
        self.ipam_type: str = conf["ipam"]["type"]
        self.dns = c.dns_of(conf)
        self.mac = ""
        if lenient:
            return
        mac: str = conf["mac"]
        if args.args:
            mac = load_args(args.args, ("MAC",)).get("MAC") or mac
        mac = conf["runtimeConfig"]["mac"] or mac
        self.mac = c.valid_mac(mac) if mac else ""
        if self.mtu < 0 or self.mtu > 65535:
            raise InvalidConfig(f"invalid MTU {self.mtu}")


def cmd_add(args: CmdArgs) -> Result:
    t = TapConf(args)
    try:
        netns_fd = open_netns(args.netns_path)
    except NetnsNotFound as e:
        raise Internal(f"failed to open netns {args.netns!r}", e.details) from e
    with ExitStack() as cleanup, ExitStack() as undo:
        cleanup.callback(os.close, netns_fd)

        def make() -> str:
            create_tap(args.ifname, multi_queue=t.multi_queue, owner=t.owner, group=t.group)
            try:
                with Netlink() as nl:
                    index = nl.get_link(args.ifname).index
                    master = 0
                    if t.bridge:
                        br = nl.find_link(t.bridge)
                        if br is None or br.kind != "bridge":
                            raise NotFound(f"bridge {t.bridge!r} not found in the container")
                        master = br.index
                with raw_socket() as s:
                    b = Batch(s)
                    if t.mac or t.mtu or master:
                        b.set_link(index=index, master=master or None, mac=t.mac, mtu=t.mtu)
                    b.set_link(index=index, up=True)
                    b.commit()
                with Netlink() as nl:
                    return nl.get_link_by_index(index).mac
            except BaseException:
                del_link_quiet(name=args.ifname)
                raise

        mac = run_in_netns(netns_fd, make)
        undo.callback(lambda: run_in_netns(netns_fd, lambda: del_link_quiet(name=args.ifname)))
        result = Result(
            cni_version=args.cni_version,
            interfaces=[Interface(name=args.ifname, mac=mac, sandbox=args.netns)],
        )
        add_addresses(args, t.ipam_type, netns_fd, result, undo, arp_notify=True)
        # Go's tap returns its own netconf dns only, never the IPAM plugin's.
        result.dns = t.dns if t.dns is not None else DNS()
        undo.pop_all()
        return result
    raise AssertionError("unreachable")


def cmd_del(args: CmdArgs) -> None:
    t = TapConf(args, lenient=True)
    if t.ipam_type:
        delegate("DEL", t.ipam_type, args)
    if not args.netns:
        return
    try:
        fd = open_netns(args.netns_path)
    except NetnsNotFound:
        return
    try:
        run_in_netns(fd, lambda: del_link_quiet(name=args.ifname))
    finally:
        os.close(fd)


def cmd_check(args: CmdArgs) -> None:
    t = TapConf(args)
    result = c.prev_result(t.conf, args)
    if result is None:
        raise InvalidConfig("Required prevResult missing")

    def check(nl: Netlink) -> None:
        link = nl.find_link(args.ifname)
        if link is None or link.kind != "tun":
            raise Internal(f"tap {args.ifname!r} not found in the container")
        if t.ipam_type:
            validate_expected_ips(nl, args.ifname, result)

    in_container(args.netns_path, check)


PLUGIN = PluginFuncs(
    about="kanal tap plugin",
    versions=ALL_VERSIONS,
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
)


def main() -> None:
    plugin_main(PLUGIN)
