"""Kernel steps, host side: a bridge, its gateway address, a veth pair with one end a port.

The other half of :mod:`kanal.netlink.steps` (public in the same way): the bridge
plugin and the engine's bridge driver make their veth pairs and bridges here. Runs
in the calling thread's namespace (the host's); the container end of a pair is
created directly in the container's namespace, by file descriptor.
"""

from __future__ import annotations

import _socket
import _thread
import errno
import os
import time

from kanal._dataclass import dataclass
from kanal.errors import Conflict, Internal, KanalError
from kanal.netlink.batch import Batch, free_index, raw_socket
from kanal.netlink.handle import LinkNotFound, Netlink
from kanal.netlink.ns import current_netns_id
from kanal.netlink.steps import random_mac, try_sysctl

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from contextlib import ExitStack
    from typing import Any

    Iface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

__all__ = [
    "Bridge",
    "PortOptions",
    "current_mac",
    "del_link_quiet",
    "ensure_bridge",
    "ensure_gateway",
    "forget_bridges",
    "setup_veth",
    "vlan_filtering_supported",
    "wait_oper_up",
]


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
