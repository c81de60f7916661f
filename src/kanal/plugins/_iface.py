"""Container-side interface work shared by the interface plugins (bridge, ptp, ...).

These functions run inside the container namespace (in a thread that entered it,
see :func:`kanal.netlink.ns.run_in_netns`) with a :class:`Netlink` opened there.
"""

from __future__ import annotations

import time
from _socket import if_nametoindex

from kanal.errors import Internal, KanalError, NotFound
from kanal.netlink.batch import Batch, raw_socket
from kanal.netlink.handle import Netlink
from kanal.netlink.ns import open_netns, run_in_netns
from kanal.netlink.sysctl import read_sysctl, write_sysctl

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from collections.abc import Callable
    from contextlib import ExitStack
    from typing import TypeVar

    from kanal.skel.cmdargs import CmdArgs
    from kanal.spec.types import Interface, Result

    T = TypeVar("T")
    Address = ipaddress.IPv4Address | ipaddress.IPv6Address

IFA_F_TENTATIVE = 0x40


def in_container(netns: str, fn: Callable[[Netlink], T]) -> T:
    """Run ``fn(nl)`` inside the namespace at path ``netns``."""
    fd = open_netns(netns)
    try:

        def work() -> T:
            with Netlink() as nl:
                return fn(nl)

        return run_in_netns(fd, work)
    finally:
        import os

        os.close(fd)


def in_container_fd(netns_fd: int, fn: Callable[[Batch], T]) -> T:
    """Run ``fn(batch)`` in a thread inside ``netns_fd`` with a fresh raw socket.

    The cheap variant of :func:`in_container` for work that only needs ACKs
    (and ``socket.if_nametoindex``, which resolves in the thread's namespace).
    """

    def work() -> T:
        with raw_socket() as s:
            return fn(Batch(s))

    return run_in_netns(netns_fd, work)


def random_mac() -> str:
    """A random locally administered unicast MAC (set explicitly, so udev keeps it)."""
    import os as _os

    b = bytearray(_os.urandom(6))
    b[0] = (b[0] & 0xFE) | 0x02
    return ":".join(f"{x:02x}" for x in b)


def _try_sysctl(key: str, value: str) -> None:
    try:
        write_sysctl(key, value)
    except KanalError:
        pass  # Go ignores these too: the key may not exist (IPv6 disabled)


def prepare_sysctls(
    ifname: str, *, enable_dad: bool = False, accept_dad: bool = True, arp_notify: bool = False
) -> None:
    """The container interface's sysctls, as each Go plugin sets them.

    ``enable_dad`` (bridge's ``enabledad``): enhanced_dad and accept_dad 1; otherwise
    ``accept_dad=False`` writes accept_dad 0 (Go's bridge always does; the other
    plugins pass it only for an attachment with IPv6, whose addresses kanal adds
    without DAD). ``arp_notify``: Go's bridge, macvlan and tap set it.
    """
    if enable_dad:
        _try_sysctl(f"net/ipv6/conf/{ifname}/enhanced_dad", "1")
        _try_sysctl(f"net/ipv6/conf/{ifname}/accept_dad", "1")
    elif not accept_dad:
        _try_sysctl(f"net/ipv6/conf/{ifname}/accept_dad", "0")
    if arp_notify:
        _try_sysctl(f"net/ipv4/conf/{ifname}/arp_notify", "1")


def has_ipv6(result: Result) -> bool:
    return any(ipc.address.version == 6 for ipc in result.ips)


def configure_iface(batch: Batch, ifname: str, result: Result, *, nodad: bool = True) -> int:
    """Add the result's addresses (those pointing at ``ifname``), set it up, add routes.

    Mirrors Go's ``ipam.ConfigureIface``: routes without a gateway use the first
    gateway of their family; IPv6 is enabled on lo and the interface when needed.
    With ``nodad`` the IPv6 addresses skip DAD, so there is nothing to settle
    (the 1-2 s wait users complained about: plugins#680). Runs in the container
    namespace; everything goes to the kernel in one batch. Returns the ifindex.
    """
    if not result.interfaces:
        raise Internal("no interfaces to configure")
    try:
        index = if_nametoindex(ifname)
    except OSError as e:
        raise NotFound(f"failed to lookup {ifname!r}", str(e)) from e
    v4gw: Address | None = None
    v6gw: Address | None = None
    v6_enabled = False
    for ipc in result.ips:
        if ipc.interface is None:
            continue
        idx = ipc.interface
        if idx < 0 or idx >= len(result.interfaces) or result.interfaces[idx].name != ifname:
            raise Internal(
                f"failed to add IP addr {ipc.address} to {ifname!r}: " "invalid interface index"
            )
        if ipc.address.version == 6 and not v6_enabled:
            for dev in ("lo", ifname):
                try:
                    if read_sysctl(f"net/ipv6/conf/{dev}/disable_ipv6") != "0":
                        write_sysctl(f"net/ipv6/conf/{dev}/disable_ipv6", "0")
                except NotFound:
                    continue
            _try_sysctl(f"net/ipv6/conf/{ifname}/keep_addr_on_down", "1")
            v6_enabled = True
        batch.add_addr(index, ipc.address, nodad=nodad)
        if ipc.gateway is not None:
            if ipc.gateway.version == 4 and v4gw is None:
                v4gw = ipc.gateway
            elif ipc.gateway.version == 6 and v6gw is None:
                v6gw = ipc.gateway
    if not any(ipc.address.version == 6 for ipc in result.ips):
        # An IPv4-only attachment gets no IPv6 link-local address (as Docker does
        # for IPv4-only networks): nothing to DAD, no MLD/RS flooded by the bridge.
        batch.set_link(index=index, no_ipv6_link_local=True)
    batch.set_link(index=index, up=True)
    if v6gw is not None and not nodad:
        batch.commit()
        with Netlink() as nl:
            settle_addresses(nl, index, timeout=5.0)
    for r in result.routes:
        gw = r.gw
        if gw is None:
            gw = v4gw if r.dst.version == 4 else v6gw
        batch.add_route(
            r.dst.network,
            gateway=gw,
            oif=index,
            priority=r.priority,
            table=r.table,
            scope=r.scope,
            mtu=r.mtu,
            advmss=r.advmss,
        )
    batch.commit()
    return index


def settle_addresses(nl: Netlink, index: int, timeout: float) -> None:
    """Wait until no IPv6 address on ``index`` is tentative (DAD done)."""
    deadline = time.monotonic() + timeout
    while True:
        tentative = [
            a for a in nl.addrs(index) if a.interface.version == 6 and a.flags & IFA_F_TENTATIVE
        ]
        if not tentative:
            return
        if time.monotonic() > deadline:
            raise Internal(f"link {index} still has tentative IPv6 addresses after {timeout}s")
        time.sleep(0.05)


def validate_expected_ips(nl: Netlink, ifname: str, result: Result) -> None:
    """CHECK: every result IP pointing at ``ifname`` is on the interface."""
    link = nl.get_link(ifname)
    have = {a.interface for a in nl.addrs(link.index)}
    for ipc in result.ips:
        if ipc.interface is not None and (
            ipc.interface >= len(result.interfaces)
            or result.interfaces[ipc.interface].name != ifname
        ):
            continue
        if ipc.address not in have:
            raise Internal(f"IP address {ipc.address} not found on interface {ifname}")


def validate_expected_routes(nl: Netlink, result: Result) -> None:
    """CHECK: every result route exists (destination and, when given, gateway)."""
    routes = nl.routes()
    for r in result.routes:
        dst = r.dst.network
        found = any(rt.dst == dst and (r.gw is None or rt.gateway == r.gw) for rt in routes)
        if not found:
            raise Internal(f"route {r.dst} via {r.gw} not found")


def prev_ips(args: CmdArgs) -> list[Address]:
    """The container's IPs from the cached result, when the runtime sent one."""
    from kanal.plugins._conf import prev_result
    from kanal.spec.gojson import decode_lenient
    from kanal.spec.gotypes import NETCONF

    try:
        prev = prev_result(decode_lenient(NETCONF, args.conf)[0], args)
    except KanalError:
        return []
    return [] if prev is None else [ipc.address.ip for ipc in prev.ips]


def del_attachment(
    args: CmdArgs, *, network: str, ipam_type: str, spoof_id: str | None = None
) -> None:
    """The DEL the veth plugins share; idempotent, every step attempted.

    The container link goes first (a missing netns or link is fine), then the
    host-side state keyed by (network, container, ifname) — masquerade, spoof
    check — and the addresses are released last, so they cannot be handed to a
    new container while old state still names them.
    """
    import os

    from kanal.errors import TeardownError
    from kanal.firewall import Owner, teardown_mac_spoof_check, teardown_masquerade
    from kanal.netlink import reaper
    from kanal.netlink.handle import LinkNotFound
    from kanal.netlink.ns import NetnsNotFound
    from kanal.skel.delegate import delegate

    errors: list[KanalError] = []
    # A DHCP lease is released by a message sent out of the container's link: that
    # IPAM goes first, while the link still exists (the order Go uses for all).
    ipam_first = ipam_type == "dhcp"
    if ipam_first:
        try:
            delegate("DEL", ipam_type, args)
        except KanalError as e:
            errors.append(e)
    if args.netns:
        try:
            fd = open_netns(args.netns_path)
        except NetnsNotFound:
            fd = -1
        if fd >= 0:
            try:
                reaper.delete_container_link(fd, args.netns_path, args.ifname)
            except (NetnsNotFound, LinkNotFound):
                pass
            except KanalError as e:
                errors.append(e)
            finally:
                os.close(fd)
    if ipam_type:
        try:
            owner = Owner(network, args.container_id, args.ifname)
        except KanalError:
            owner = None  # not a name ADD could have masqueraded under
        if owner is not None:
            try:
                teardown_masquerade(owner, prev_ips(args) or None)
            except KanalError as e:
                errors.append(e)
    if spoof_id is not None:
        try:
            teardown_mac_spoof_check(spoof_id)
        except KanalError as e:
            errors.append(e)
    if ipam_type and not ipam_first:
        try:
            delegate("DEL", ipam_type, args)
        except KanalError as e:
            errors.append(e)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise TeardownError("DEL failed", errors)


def gc_attachments(args: CmdArgs, *, network: str, ipam_type: str) -> None:
    """GC the veth plugins share: masquerade of attachments not valid, then IPAM.

    Without a valid-attachments list (cnitool's ``gc``) only IPAM is asked.
    """
    from kanal.errors import TeardownError
    from kanal.firewall import gc_masquerade_all
    from kanal.skel.delegate import delegate
    from kanal.spec.netconf import parse_plugin_conf

    errors: list[KanalError] = []
    valid = parse_plugin_conf(args.conf, require_name=False).valid_attachments
    if valid is not None:
        try:
            gc_masquerade_all(network, {(a.container_id, a.ifname) for a in valid})
        except KanalError as e:
            errors.append(e)
    if ipam_type:
        try:
            delegate("GC", ipam_type, args)
        except KanalError as e:
            errors.append(e)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise TeardownError("GC failed", errors)


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
    from kanal.skel.delegate import delegate

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
    from kanal.skel.delegate import delegate

    try:
        delegate("DEL", ipam_type, args)
    except KanalError:
        pass


def prev_container(args: CmdArgs) -> tuple[Result, Interface]:
    """CHECK's start: the prevResult and its entry for CNI_IFNAME in CNI_NETNS.

    Raises:
        InvalidConfig: no prevResult. Internal: it names another sandbox.
    """
    from kanal.errors import InvalidConfig
    from kanal.plugins._conf import prev_result
    from kanal.spec.gojson import decode
    from kanal.spec.gotypes import NETCONF

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
    import os

    from kanal.netlink.ns import NetnsNotFound
    from kanal.skel.delegate import delegate

    errors: list[KanalError] = []
    if ipam_type:
        try:
            delegate("DEL", ipam_type, args)
        except KanalError as e:
            errors.append(e)
    if args.netns:
        try:
            fd = open_netns(args.netns_path)
        except NetnsNotFound:
            fd = -1
        if fd >= 0:
            try:
                in_netns(fd)
            except KanalError as e:
                errors.append(e)
            finally:
                os.close(fd)
    if errors:
        raise errors[0]
