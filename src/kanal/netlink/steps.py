"""Kernel steps: the public building blocks of attaching a container to a network.

What ``pkg/ip`` is to the Go plugins: a veth pair with one end moved into a
container's namespace and the other enslaved to a bridge, the bridge itself, a
gateway address on it, the container side's addresses, routes and sysctls, and
the checks CHECK makes. CNI plugins (``kanal.plugins``) and the engine's drivers
(``kanal.engine.drivers``) both call these; nothing here knows CNI's protocol
(no delegation, no config decoding): a :class:`~kanal.spec.types.Result` is only
the shape the addresses and routes arrive in.

Container-side steps run inside the container namespace, in a thread that entered
it (:func:`in_container`, :func:`in_container_fd`; see :mod:`kanal.netlink.ns`).
Everything on a plugin's exec path stays lean (no pyroute2 unless a rare operation
asks for it; see docs/fastpath.md).
"""

from __future__ import annotations

import _socket
import _thread
import errno
import os
import time

from kanal._dataclass import dataclass
from kanal.errors import Conflict, Internal, KanalError, NotFound
from kanal.netlink.batch import Batch, free_index, raw_socket
from kanal.netlink.handle import LinkNotFound, Netlink
from kanal.netlink.ns import current_netns_id, open_netns, run_in_netns
from kanal.netlink.sysctl import read_sysctl, write_sysctl
from kanal.netlink.wire import IFA_F_TENTATIVE

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from collections.abc import Callable
    from contextlib import ExitStack
    from typing import Any, TypeVar

    from kanal.spec.types import Result

    T = TypeVar("T")
    Address = ipaddress.IPv4Address | ipaddress.IPv6Address
    Iface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

__all__ = [
    "Bridge",
    "PortOptions",
    "configure_iface",
    "current_mac",
    "del_link_quiet",
    "enable_forward",
    "ensure_bridge",
    "ensure_gateway",
    "forget_bridges",
    "has_ipv6",
    "in_container",
    "in_container_fd",
    "prepare_sysctls",
    "random_mac",
    "settle_addresses",
    "setup_veth",
    "try_sysctl",
    "validate_expected_ips",
    "validate_expected_routes",
    "vlan_filtering_supported",
    "wait_oper_up",
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


# --- the bridge -----------------------------------------------------------------------


@dataclass(frozen=True)
class Bridge:
    """A bridge in the calling thread's namespace, as :func:`ensure_bridge` found it."""

    index: int
    name: str
    mac: str
    # The MAC was set explicitly (kanal made the bridge, or pinned it): it no longer
    # follows the ports'. An unpinned one may change when a port is added.
    pinned: bool = True


# (netns id, bridge name) -> bridge. Why: in kanald every ADD on a network would
# otherwise re-read the same bridge; an if_nametoindex() (one ioctl) proves the
# cached entry still names the same device.
_BRIDGES: dict[tuple[tuple[int, int], str], Bridge] = {}
_BRIDGES_LOCK = _thread.allocate_lock()


def forget_bridges() -> None:
    """Drop the bridge cache (a cached bridge vanished: the next ensure reads again)."""
    _BRIDGES.clear()


def ensure_bridge(
    name: str, *, mtu: int = 0, vlan_filtering: bool = False, promisc: bool = False
) -> Bridge:
    """The bridge ``name`` in this namespace, made (with a random, pinned MAC) if missing.

    ``promisc`` turns promiscuous mode on when it is off. IPv6 router advertisements
    are ignored on it, as Go does even on a bridge it did not make.
    """
    key = (current_netns_id(), name)
    cached = _BRIDGES.get(key)
    if cached is not None and not promisc:
        try:
            if _socket.if_nametoindex(name) == cached.index:
                return cached
        except OSError:
            pass
    with _BRIDGES_LOCK, Netlink() as nl:
        # A MAC set at creation is kept: the bridge does not follow its ports'
        # MACs as they churn (what Go's ensureAddr re-setting it achieves).
        link, created = nl.ensure_bridge(
            name, mtu=mtu, vlan_filtering=vlan_filtering, mac=random_mac()
        )
        if promisc and not link.promiscuity:
            nl.set_promisc(link.index)
        try_sysctl(f"net/ipv6/conf/{name}/accept_ra", "0")
        br = Bridge(link.index, link.name, link.mac, pinned=created)
        _BRIDGES[key] = br
        return br


def ensure_gateway(br: Bridge, gw: Iface, force: bool) -> None:
    """Go ``ensureAddr``, fast when the address is already there (every ADD but the first).

    Raises:
        Conflict: the bridge has another address of the family and not ``force``.
    """
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


def _pinned(br: Bridge) -> None:
    with _BRIDGES_LOCK:
        for key, cached in list(_BRIDGES.items()):
            if cached.index == br.index and cached.name == br.name:
                _BRIDGES[key] = Bridge(br.index, br.name, br.mac, pinned=True)


def current_mac(br: Bridge) -> str:
    """The bridge's MAC now (Go reads it again: an unpinned one may have taken a port's)."""
    cached = next((b for b in _BRIDGES.values() if b.index == br.index), br)
    if br.pinned or cached.pinned:
        return br.mac
    with Netlink() as nl:
        return nl.get_link_by_index(br.index).mac


_VLAN_SUPPORT: bool | None = None


def vlan_filtering_supported() -> bool:
    """Whether this kernel filters VLANs on bridges (probed once, with a scratch bridge)."""
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


# --- the veth pair --------------------------------------------------------------------


@dataclass(frozen=True)
class PortOptions:
    """How the bridge end of a veth pair is set up.

    ``vlan``: the port's PVID (untagged); ``vlans``: tagged VLANs (with VLAN 1 as PVID
    when ``vlan`` is 0); VLAN 1 is removed first unless ``preserve_default_vlan``.
    """

    mtu: int = 0
    hairpin: bool = False
    isolated: bool = False
    vlan: int = 0
    vlans: tuple[int, ...] = ()
    preserve_default_vlan: bool = False


def setup_veth(
    br: Bridge,
    netns_fd: int,
    ifname: str,
    cont_mac: str,
    undo: ExitStack,
    port: PortOptions,
    *,
    host_name: str = "",
    alias: str = "",
) -> tuple[str, int, str]:
    """A veth pair: ``ifname`` (MAC ``cont_mac``) in ``netns_fd``, the other end a port
    of ``br``, both up; returns the bridge end's (name, index, mac).

    The bridge end is ``host_name``, or a random ``veth…`` name; ``alias`` marks it
    from birth (in the creating batch). ``undo`` gets the pair's deletion.

    Raises:
        Conflict: the container or the named host end exists already.
        LinkNotFound: ``br`` vanished (the bridge cache is dropped; ensure it again).
    """
    brport = {}
    if port.hairpin:
        brport["mode"] = 1
    if port.isolated:
        brport["isolated"] = 1
    with raw_socket() as s:
        for _ in range(10):
            host, host_mac = host_name or "veth" + os.urandom(4).hex(), random_mac()
            if _create_veth(s, br, netns_fd, ifname, cont_mac, port, brport, host, host_mac, alias):
                break
            if host_name:
                raise Conflict(f"veth {host_name} already exists")
        else:
            raise Internal("failed to find a unique veth name")
    index = _socket.if_nametoindex(host)
    undo.callback(del_link_quiet, index)
    try_sysctl(f"net/ipv6/conf/{host}/accept_ra", "0")
    if port.vlan or port.vlans:
        with Netlink() as nl:
            if not port.preserve_default_vlan:
                nl.vlan_del(index, 1)
            if port.vlan:
                nl.vlan_add(index, port.vlan, pvid=True, untagged=True)
            for v in port.vlans:
                nl.vlan_add(index, v)
            if not port.vlan:
                nl.vlan_add(index, 1, pvid=True, untagged=True)
    return host, index, host_mac


def _create_veth(
    s: Any,
    br: Bridge,
    netns_fd: int,
    ifname: str,
    cont_mac: str,
    port: PortOptions,
    brport: dict[str, int],
    host: str,
    host_mac: str,
    alias: str,
) -> bool:
    """One attempt of :func:`setup_veth`; False when the host end's name is taken."""
    b = Batch(s)
    index = free_index() if alias else 0
    # txqlen 0 on both ends, as Go's netlink library makes a veth.
    b.add_veth(
        host,
        ifname,
        netns_fd,
        mac=host_mac,
        peer_mac=cont_mac,
        mtu=port.mtu,
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
    except Conflict:
        try:
            _socket.if_nametoindex(host)
        except OSError:
            raise Conflict(f"container veth name provided ({ifname}) already exists") from None
        return False  # the host name collided
    except LinkNotFound:
        # The cached bridge vanished since; forget it and let the caller retry.
        forget_bridges()
        raise
    return True


def del_link_quiet(index: int = 0, *, name: str = "") -> None:
    """Delete link ``index`` (or ``name``) in this namespace; any failure ignored (an
    undo step)."""
    with raw_socket() as s:
        b = Batch(s)
        b.del_link(index=index, name=name)
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


def wait_oper_up(host: str, index: int) -> None:
    """Wait until bridge port ``host`` (``index``) is operationally up (~2.5 s at most).

    Raises:
        Internal: it is not by then.
    """
    # Go sleeps 0/50/500/1000/1000 ms; a veth whose peer is up is oper-up at once,
    # so poll finely and give up after the same total.
    deadline = time.monotonic() + 2.55
    while not _oper_up(host, index):
        if time.monotonic() > deadline:
            raise Internal(f"bridge port in error state: {host}")
        time.sleep(0.002)
