"""Kernel steps, container side: the public building blocks of an attachment.

What ``pkg/ip`` is to the Go plugins, for the container's half: entering its
namespace, its interface's addresses, routes and sysctls, and the checks CHECK
makes; the host's half (a bridge, its gateway, a veth pair with one end a port) is
:mod:`kanal.netlink.bridgeport`. CNI plugins (``kanal.plugins``) and the engine's
drivers (``kanal.engine.drivers``) both call these; nothing here knows CNI's
protocol (no delegation, no config decoding): a :class:`~kanal.spec.types.Result`
is only the shape the addresses and routes arrive in.

Container-side steps run inside the container namespace, in a thread that entered
it (:func:`in_container`, :func:`in_container_fd`; see :mod:`kanal.netlink.ns`).
Everything on a plugin's exec path stays lean (no pyroute2 unless a rare operation
asks for it; see docs/fastpath.md).
"""

from __future__ import annotations

import _socket
import os
import time

from kanal.errors import Conflict, Internal, KanalError, NotFound
from kanal.netlink.batch import Batch, raw_socket
from kanal.netlink.handle import Netlink
from kanal.netlink.ns import open_netns, run_in_netns
from kanal.netlink.sysctl import read_sysctl, write_sysctl
from kanal.netlink.wire import IFA_F_TENTATIVE

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from collections.abc import Callable
    from typing import TypeVar

    from kanal.spec.types import Result

    T = TypeVar("T")
    Address = ipaddress.IPv4Address | ipaddress.IPv6Address
    Iface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

__all__ = [
    "add_veth_pair",
    "configure_iface",
    "enable_forward",
    "has_ipv6",
    "in_container",
    "in_container_fd",
    "prepare_sysctls",
    "random_mac",
    "settle_addresses",
    "try_sysctl",
    "validate_expected_ips",
    "validate_expected_routes",
]


# --- running in a container's namespace ---------------------------------------------


def in_container(netns: str, fn: Callable[[Netlink], T]) -> T:
    """Run ``fn(nl)`` inside the namespace at path ``netns``."""
    fd = open_netns(netns)
    try:

        def work() -> T:
            with Netlink() as nl:
                return fn(nl)

        return run_in_netns(fd, work)
    finally:
        os.close(fd)


def in_container_fd(netns_fd: int, fn: Callable[[Batch], T]) -> T:
    """Run ``fn(batch)`` in a thread inside ``netns_fd`` with a fresh raw socket.

    The cheap variant of :func:`in_container` for work that only needs ACKs
    (and ``if_nametoindex``, which resolves in the thread's namespace).
    """

    def work() -> T:
        with raw_socket() as s:
            return fn(Batch(s))

    return run_in_netns(netns_fd, work)


def add_veth_pair(
    sock: _socket.socket, netns_fd: int, ifname: str, cont_mac: str, *, mtu: int = 0
) -> tuple[str, int, str]:
    """A veth pair, both ends up: ``ifname`` (MAC ``cont_mac``) made directly in
    ``netns_fd``, the other end here under a random ``veth…`` name (no bridge: for a
    bridge port see :func:`kanal.netlink.bridgeport.setup_veth`). Returns the host
    end's (name, index, mac).

    Raises:
        Conflict: ``ifname`` exists in the container.
    """
    for _ in range(10):
        host, host_mac = "veth" + os.urandom(4).hex(), random_mac()
        b = Batch(sock)
        # txqlen 0 on both ends, as Go's netlink library makes a veth.
        b.add_veth(
            host, ifname, netns_fd, mac=host_mac, peer_mac=cont_mac, mtu=mtu, up=True, txqlen=0
        )
        try:
            b.commit()
            break
        except Conflict:
            try:
                _socket.if_nametoindex(host)
            except OSError:
                raise Conflict(f"container veth name provided ({ifname}) already exists") from None
            # the random host name collided; try another
    else:
        raise Internal("failed to find a unique veth name")
    return host, _socket.if_nametoindex(host), host_mac


def random_mac() -> str:
    """A random locally administered unicast MAC (set explicitly, so udev keeps it)."""
    b = bytearray(os.urandom(6))
    b[0] = (b[0] & 0xFE) | 0x02
    return ":".join(f"{x:02x}" for x in b)


# --- sysctls --------------------------------------------------------------------------


def try_sysctl(key: str, value: str) -> None:
    """Write a sysctl, ignoring failure (the key may not exist: IPv6 disabled)."""
    try:
        write_sysctl(key, value)
    except KanalError:
        pass  # Go ignores these too


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
        try_sysctl(f"net/ipv6/conf/{ifname}/enhanced_dad", "1")
        try_sysctl(f"net/ipv6/conf/{ifname}/accept_dad", "1")
    elif not accept_dad:
        try_sysctl(f"net/ipv6/conf/{ifname}/accept_dad", "0")
    if arp_notify:
        try_sysctl(f"net/ipv4/conf/{ifname}/arp_notify", "1")


def enable_forward(family: int) -> None:
    """IP forwarding on for ``family`` (4 or 6) in this namespace, if it is not yet."""
    key = "net/ipv4/ip_forward" if family == 4 else "net/ipv6/conf/all/forwarding"
    if read_sysctl(key) != "1":
        write_sysctl(key, "1")


# --- addresses and routes in the container --------------------------------------------


def has_ipv6(result: Result) -> bool:
    return any(ipc.address.version == 6 for ipc in result.ips)


def _enable_ipv6(ifname: str) -> None:
    for dev in ("lo", ifname):
        try:
            if read_sysctl(f"net/ipv6/conf/{dev}/disable_ipv6") != "0":
                write_sysctl(f"net/ipv6/conf/{dev}/disable_ipv6", "0")
        except NotFound:
            continue
    try_sysctl(f"net/ipv6/conf/{ifname}/keep_addr_on_down", "1")


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
        index = _socket.if_nametoindex(ifname)
    except OSError as e:
        raise NotFound(f"failed to lookup {ifname!r}", str(e)) from e
    gws: dict[int, Address] = {}
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
            _enable_ipv6(ifname)
            v6_enabled = True
        batch.add_addr(index, ipc.address, nodad=nodad)
        if ipc.gateway is not None and ipc.gateway.version not in gws:
            gws[ipc.gateway.version] = ipc.gateway
    if not has_ipv6(result):
        # An IPv4-only attachment gets no IPv6 link-local address (as Docker does
        # for IPv4-only networks): nothing to DAD, no MLD/RS flooded by the bridge.
        batch.set_link(index=index, no_ipv6_link_local=True)
    batch.set_link(index=index, up=True)
    if 6 in gws and not nodad:
        batch.commit()
        with Netlink() as nl:
            settle_addresses(nl, index, timeout=5.0)
    for r in result.routes:
        batch.add_route(
            r.dst.network,
            gateway=r.gw if r.gw is not None else gws.get(r.dst.version),
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
