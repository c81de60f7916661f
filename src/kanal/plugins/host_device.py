"""The ``host-device`` CNI plugin: move an existing host link into the container.

As the reference (Go ``plugins/main/host-device``): the link is found by
``device`` (name), ``hwaddr`` (MAC) or ``kernelpath`` (its /sys/devices path);
it is moved into the container namespace under CNI_IFNAME, its original name
kept in the link's alias, and brought up; ``ipam`` is optional. DEL moves it
back to the host namespace under its original name, down (as Go's); a second DEL
finds nothing to do. ``pciBusID`` (DPDK / SR-IOV devices bound to
userspace drivers) is refused: there is no such hardware to test it on here.
"""

from __future__ import annotations

import os
from contextlib import ExitStack

from kanal.errors import Internal, InvalidConfig, KanalError, NotFound
from kanal.netlink.batch import Batch, raw_socket
from kanal.netlink.handle import Link, Netlink
from kanal.netlink.ns import NetnsNotFound, open_netns
from kanal.netlink.steps import (
    in_container,
    in_container_fd,
    validate_expected_ips,
    validate_expected_routes,
)
from kanal.plugins import _conf as c
from kanal.plugins._iface import add_addresses, release_then
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.skel.delegate import delegate
from kanal.skel.dispatcher import plugin_main
from kanal.spec import gotypes
from kanal.spec.gojson import BOOL, STRING, Struct
from kanal.spec.types import DNS, Interface, Result
from kanal.spec.versions import ALL_VERSIONS

__all__ = ["PLUGIN", "main"]

_SPECIFY = 'specify either "device", "hwaddr", "kernelpath" or "pciBusID"'


NETCONF = gotypes.NETCONF.extend(
    "NetConf",
    [
        ("device", STRING),
        ("hwaddr", STRING),
        ("DPDKMode", BOOL),
        ("kernelpath", STRING),
        ("pciBusID", STRING),
        ("runtimeConfig", Struct("", [("deviceID", STRING)], pkg="")),
    ],
)


class HostDeviceConf:
    """The config, checked; ``lenient`` (DEL): no checks."""

    def __init__(self, args: CmdArgs, *, lenient: bool = False) -> None:
        conf = c.load(NETCONF, args, lenient=lenient)
        self.conf = conf
        self.device: str = conf["device"]
        self.hwaddr: str = conf["hwaddr"].lower()
        self.kernelpath: str = conf["kernelpath"]
        self.pci: str = conf["pciBusID"]
        self.ipam_type: str = conf["ipam"]["type"]
        self.dns = c.dns_of(conf)
        if lenient:
            return
        given = [x for x in (self.device, self.hwaddr, self.kernelpath, self.pci) if x]
        if len(given) != 1:
            raise InvalidConfig(_SPECIFY)
        if self.pci:
            raise InvalidConfig("pciBusID (userspace-driver devices) is not supported by kanal")
        if self.kernelpath and (
            not self.kernelpath.startswith("/sys/devices/") or ".." in self.kernelpath
        ):
            raise InvalidConfig(
                f'kernel device path "{self.kernelpath}" must be absolute and begin with '
                "/sys/devices/"
            )
        if self.hwaddr:
            c.valid_mac(self.hwaddr)


def _find(h: HostDeviceConf) -> Link:
    with Netlink() as nl:
        if h.device:
            link = nl.find_link(h.device)
            if link is None:
                raise NotFound(f'failed to find host device: Link not found "{h.device}"')
            return link
        if h.hwaddr:
            for link in nl.links():
                if link.mac.lower() == h.hwaddr:
                    return link
            raise NotFound(f"failed to find host device: no link with hwaddr {h.hwaddr}")
        # kernelpath: /sys/devices/.../net/<name>; sysfs names the namespace it was
        # mounted in, so check the name found there against this namespace's links.
        # A device directory lists its links under net/; a (virtual) link's own
        # directory is accepted too.
        try:
            names = os.listdir(os.path.join(h.kernelpath, "net"))
        except OSError as e:
            if os.path.exists(os.path.join(h.kernelpath, "ifindex")):
                names = [os.path.basename(h.kernelpath.rstrip("/"))]
            else:
                raise NotFound(f"failed to find network device in {h.kernelpath}", str(e)) from e
        for name in names:
            link = nl.find_link(name)
            if link is not None:
                return link
        raise NotFound(f"failed to find host device in {h.kernelpath}")


def _host_ns_fd() -> int:
    # The calling thread's namespace: kanald serves requests from threads.
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def cmd_add(args: CmdArgs) -> Result:
    h = HostDeviceConf(args)
    try:
        netns_fd = open_netns(args.netns_path)
    except NetnsNotFound as e:
        raise Internal(f"failed to open netns {args.netns!r}", e.details) from e
    with ExitStack() as cleanup, ExitStack() as undo:
        cleanup.callback(os.close, netns_fd)
        link = _find(h)
        host_fd = _host_ns_fd()
        cleanup.callback(os.close, host_fd)
        with raw_socket() as s:
            b = Batch(s)
            b.set_link(index=link.index, up=False)
            b.move_link(link.index, netns_fd, args.ifname, alias=link.name)
            b.commit()
        undo.callback(_move_out_quiet, netns_fd, host_fd, args.ifname)
        result = Result(
            cni_version=args.cni_version,
            interfaces=[Interface(name=args.ifname, mac=link.mac, sandbox=args.netns)],
        )
        add_addresses(args, h.ipam_type, netns_fd, result, undo)
        # Go's host-device returns its own netconf dns only, never the IPAM plugin's.
        result.dns = h.dns if h.dns is not None else DNS()
        undo.pop_all()
        return result
    raise AssertionError("unreachable")


def _move_out(netns_fd: int, host_fd: int, ifname: str) -> bool:
    """Move ``ifname`` back under its saved name; False if it is not in the container."""

    def out(b: Batch) -> bool:
        with Netlink() as nl:
            link = nl.find_link(ifname)
        if link is None:
            return False
        b.set_link(index=link.index, up=False)
        b.move_link(link.index, host_fd, link.alias or ifname, alias="")
        b.commit()
        return True

    moved = in_container_fd(netns_fd, out)
    return bool(moved)


def _move_out_quiet(netns_fd: int, host_fd: int, ifname: str) -> None:
    try:
        _move_out(netns_fd, host_fd, ifname)
    except KanalError:
        pass


def cmd_del(args: CmdArgs) -> None:
    h = HostDeviceConf(args, lenient=True)

    def back_to_host(fd: int) -> None:
        # Left down, as Go leaves it (moving a link between namespaces sets it down).
        host_fd = _host_ns_fd()
        try:
            _move_out(fd, host_fd, args.ifname)
        finally:
            os.close(host_fd)

    release_then(args, h.ipam_type, back_to_host)


def cmd_check(args: CmdArgs) -> None:
    h = HostDeviceConf(args)
    if h.ipam_type:
        delegate("CHECK", h.ipam_type, args)
    result = c.prev_result(h.conf, args)
    if result is None:
        raise InvalidConfig("Required prevResult missing")

    def check(nl: Netlink) -> None:
        link = nl.find_link(args.ifname)
        if link is None:
            raise Internal(f"failed to find {args.ifname!r} in the container")
        validate_expected_ips(nl, args.ifname, result)
        validate_expected_routes(nl, result)

    try:
        in_container(args.netns_path, check)
    except NetnsNotFound as e:
        raise Internal(f"failed to open netns {args.netns!r}", e.details) from e


PLUGIN = PluginFuncs(
    about="kanal host-device plugin",
    versions=ALL_VERSIONS,
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
)


def main() -> None:
    plugin_main(PLUGIN)
