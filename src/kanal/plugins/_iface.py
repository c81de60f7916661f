"""The CNI side of attaching an interface, shared by the interface plugins (bridge, ptp, ...).

IPAM delegation in the order DEL and GC need, CHECK's reading of the prevResult,
and the last ADD step of the one-link plugins. The kernel work itself is
:mod:`kanal.netlink.steps` (public: the engine's drivers use it too).
"""

from __future__ import annotations

import os
from _socket import if_nametoindex

from kanal.errors import Internal, InvalidConfig, KanalError, TeardownError
from kanal.netlink import reaper
from kanal.netlink.handle import LinkNotFound
from kanal.netlink.ns import NetnsNotFound, open_netns
from kanal.netlink.steps import configure_iface, has_ipv6, in_container_fd, prepare_sysctls
from kanal.plugins._conf import prev_result
from kanal.skel.delegate import delegate
from kanal.spec.gojson import decode, decode_lenient
from kanal.spec.gotypes import NETCONF

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from collections.abc import Callable
    from contextlib import ExitStack
    from typing import Any

    from kanal.netlink.batch import Batch
    from kanal.skel.cmdargs import CmdArgs
    from kanal.spec.types import Interface, Result

    Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def prev_ips(args: CmdArgs) -> list[Address]:
    """The container's IPs from the cached result, when the runtime sent one."""
    try:
        prev = prev_result(decode_lenient(NETCONF, args.conf)[0], args)
    except KanalError:
        return []
    return [] if prev is None else [ipc.address.ip for ipc in prev.ips]


def _attempt(errors: list[KanalError], fn: Callable[..., object], *a: Any) -> None:
    """Run one teardown step; its KanalError is collected, the next step still runs."""
    try:
        fn(*a)
    except KanalError as e:
        errors.append(e)


def _in_netns_if_present(
    args: CmdArgs, fn: Callable[[int], None], errors: list[KanalError]
) -> None:
    """``fn(fd)`` in CNI_NETNS when there is one and it still exists (collected as
    :func:`_attempt` does)."""
    if not args.netns:
        return
    try:
        fd = open_netns(args.netns_path)
    except NetnsNotFound:
        return
    try:
        _attempt(errors, fn, fd)
    finally:
        os.close(fd)


def _raise_all(errors: list[KanalError], what: str) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise TeardownError(what, errors)


def del_attachment(
    args: CmdArgs, *, network: str, ipam_type: str, spoof_id: str | None = None
) -> None:
    """The DEL the veth plugins share; idempotent, every step attempted.

    The container link goes first (a missing netns or link is fine), then the
    host-side state keyed by (network, container, ifname) — masquerade, spoof
    check — and the addresses are released last, so they cannot be handed to a
    new container while old state still names them.
    """
    # lazy: DEL and GC only: an ADD of the one-link plugins need not load the firewall layer
    from kanal.firewall import Owner, teardown_mac_spoof_check, teardown_masquerade

    errors: list[KanalError] = []
    # A DHCP lease is released by a message sent out of the container's link: that
    # IPAM goes first, while the link still exists (the order Go uses for all).
    ipam_first = ipam_type == "dhcp"
    if ipam_first:
        _attempt(errors, delegate, "DEL", ipam_type, args)

    # Without a prevResult, the masquerade's addresses are the link's own, read
    # before it goes (as Go's DEL does), rather than a scan of every element.
    ips: list[Address] = prev_ips(args) if ipam_type else []
    on_link: list[Address] | None = [] if ipam_type and not ips else None
    # The kernel unregisters the link (~15-20 ms) while the firewall state goes.
    link_deleted = _start_link_delete(args, on_link)
    if ipam_type:
        try:
            owner = Owner(network, args.container_id, args.ifname)
        except KanalError:
            owner = None  # not a name ADD could have masqueraded under
        if owner is not None:
            _attempt(errors, teardown_masquerade, owner, ips or on_link or None)
    if spoof_id is not None:
        _attempt(errors, teardown_mac_spoof_check, spoof_id)
    # The addresses only once the link that held them is gone.
    _attempt(errors, link_deleted)
    if ipam_type and not ipam_first:
        _attempt(errors, delegate, "DEL", ipam_type, args)
    _raise_all(errors, "DEL failed")


def _start_link_delete(args: CmdArgs, addrs: list[Address] | None) -> Callable[[], None]:
    """Begin deleting the container's link in CNI_NETNS (when there is one and it
    still exists); the returned function waits for it (a missing link is fine).
    ``addrs`` (when given) receives the link's addresses before this returns."""
    if not args.netns:
        return lambda: None
    try:
        fd = open_netns(args.netns_path)
    except NetnsNotFound:
        return lambda: None
    try:
        pending = reaper.start_container_link_delete(
            fd, args.netns_path, args.ifname, detach=args.process_exits, addrs=addrs
        )
    except (NetnsNotFound, LinkNotFound):
        os.close(fd)
        return lambda: None
    except BaseException:
        os.close(fd)
        raise

    def wait() -> None:
        try:
            pending()
        except (NetnsNotFound, LinkNotFound):
            pass
        finally:
            os.close(fd)

    return wait


def gc_attachments(args: CmdArgs, *, network: str, ipam_type: str) -> None:
    """GC the veth plugins share: masquerade of attachments not valid, then IPAM.

    Without a valid-attachments list (cnitool's ``gc``) only IPAM is asked.
    """
    # lazy: DEL and GC only: an ADD of the one-link plugins need not load the firewall layer
    from kanal.firewall import gc_masquerade_all

    # lazy: GC only (the conflist reader is not on the ADD/DEL path)
    from kanal.spec.netconf import parse_plugin_conf

    errors: list[KanalError] = []
    valid = parse_plugin_conf(args.conf, require_name=False).valid_attachments
    if valid is not None:
        _attempt(errors, gc_masquerade_all, network, {(a.container_id, a.ifname) for a in valid})
    if ipam_type:
        _attempt(errors, delegate, "GC", ipam_type, args)
    _raise_all(errors, "GC failed")


def add_addresses(
    args: CmdArgs,
    ipam_type: str,
    netns_fd: int,
    result: Result,
    undo: ExitStack,
    *,
    arp_notify: bool = False,
) -> None:
    """The last step of the plugins that hand the container one link (macvlan,
    host-device, tap): with IPAM, its addresses and routes on interface 0 of
    ``result`` (released again by ``undo``); without, only the link up."""
    if not ipam_type:

        def up(b: Batch) -> None:
            b.set_link(index=if_nametoindex(args.ifname), up=True)
            b.commit()

        in_container_fd(netns_fd, up)
        return
    ipam = delegate("ADD", ipam_type, args)
    assert ipam is not None
    undo.callback(_quiet_ipam_del, ipam_type, args)
    if not ipam.ips:
        raise Internal("IPAM plugin returned missing IP config")
    result.ips, result.routes, result.dns = ipam.ips, ipam.routes, ipam.dns
    for ipc in result.ips:
        ipc.interface = 0

    def configure(b: Batch) -> None:
        # arp_notify: the kernel then announces the address when the link comes up.
        prepare_sysctls(args.ifname, accept_dad=not has_ipv6(result), arp_notify=arp_notify)
        configure_iface(b, args.ifname, result, nodad=True)

    in_container_fd(netns_fd, configure)


def _quiet_ipam_del(ipam_type: str, args: CmdArgs) -> None:
    try:
        delegate("DEL", ipam_type, args)
    except KanalError:
        pass


def prev_container(args: CmdArgs) -> tuple[Result, Interface]:
    """CHECK's start: the prevResult and its entry for CNI_IFNAME in CNI_NETNS.

    Raises:
        InvalidConfig: no prevResult. Internal: it names another sandbox.
    """
    result = prev_result(decode(NETCONF, args.conf), args)
    if result is None:
        raise InvalidConfig("Required prevResult missing")
    cont = next(
        (i for i in result.interfaces if i.name == args.ifname and i.sandbox == args.netns), None
    )
    if cont is None:
        raise Internal(f"Sandbox in prevResult doesn't match configured netns: {args.netns}")
    return result, cont


def release_then(args: CmdArgs, ipam_type: str, in_netns: Callable[[int], None]) -> None:
    """DEL of the one-link plugins: the addresses first (a DHCP release goes out of the
    link), then ``in_netns(fd)`` if the namespace still exists; every step attempted."""
    errors: list[KanalError] = []
    if ipam_type:
        _attempt(errors, delegate, "DEL", ipam_type, args)
    _in_netns_if_present(args, in_netns, errors)
    if errors:
        raise errors[0]
