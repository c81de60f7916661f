"""One rtnetlink socket in one namespace: typed reads and the slower idempotent ops.

The hot path writes through :mod:`kanal.netlink.batch` (pipelined, ACK-only);
this handle is for what must read kernel state (links, addresses, routes) and for
rarer changes (creating a bridge, VLAN entries). Every method translates
pyroute2's ``NetlinkError`` into kanal errors: a missing link is
:class:`LinkNotFound`, "already exists" is success where the operation is
declared idempotent (concurrent ADDs race on the same bridge: plugins#366).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted, NetlinkError

from kanal.errors import Conflict, Internal, KanalError, NotFound
from kanal.netlink.ns import netns_socket

__all__ = ["Addr", "Link", "LinkNotFound", "Netlink", "Route", "netlink"]

IFF_UP = 0x1
IFF_PROMISC = 0x100
IFA_F_NODAD = 0x02
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
NETLINK_ROUTE = 0

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class LinkNotFound(NotFound):
    """No link with that name or index in the namespace."""


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str
    mac: str
    mtu: int
    master: int
    flags: int
    alias: str
    peer_index: int
    promiscuity: int
    operstate: str = ""
    txqlen: int = 0

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


@dataclass(frozen=True)
class Addr:
    index: int
    interface: Interface
    flags: int


@dataclass(frozen=True)
class Route:
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: Address | None
    oif: int
    table: int
    scope: int
    priority: int


def _link_from_msg(msg: Any) -> Link:
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else ""
    return Link(
        index=msg["index"],
        name=msg.get_attr("IFLA_IFNAME") or "",
        kind=kind or "",
        mac=msg.get_attr("IFLA_ADDRESS") or "",
        mtu=msg.get_attr("IFLA_MTU") or 0,
        master=msg.get_attr("IFLA_MASTER") or 0,
        flags=msg["flags"],
        alias=msg.get_attr("IFLA_IFALIAS") or "",
        peer_index=msg.get_attr("IFLA_LINK") or 0,
        promiscuity=msg.get_attr("IFLA_PROMISCUITY") or 0,
        operstate=str(msg.get_attr("IFLA_OPERSTATE") or ""),
        txqlen=msg.get_attr("IFLA_TXQLEN") or 0,
    )


def _err(e: NetlinkError, what: str) -> KanalError:
    if e.code in (errno.ENODEV, errno.ENOENT):
        return LinkNotFound(what, e.args[1] if len(e.args) > 1 else "")
    if e.code == errno.EEXIST:
        return Conflict(what, "file exists")
    return Internal(what, str(e.args[1] if len(e.args) > 1 else e))


class Netlink:
    """rtnetlink in the current namespace (``netns_fd=None``) or in ``netns_fd``.

    Not thread-safe: open one per operation and close it (use :func:`netlink`).
    """

    def __init__(self, netns_fd: int | None = None) -> None:
        if netns_fd is None:
            self._ipr = IPRoute()
        else:
            sock = netns_socket(netns_fd, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
            self._ipr = IPRoute(use_socket=sock)

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- links ------------------------------------------------------------
    def _dump(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        for _ in range(5):
            try:
                return list(getattr(self._ipr, method)(*args, **kwargs))
            except NetlinkDumpInterrupted:
                continue
        raise Internal(f"netlink dump {method} interrupted 5 times")

    def get_link(self, name: str) -> Link:
        try:
            msgs = self._ipr.link("get", ifname=name)
        except NetlinkError as e:
            raise _err(e, f"link {name!r} not found") from e
        return _link_from_msg(msgs[0])

    def get_link_by_index(self, index: int) -> Link:
        try:
            msgs = self._ipr.link("get", index=index)
        except NetlinkError as e:
            raise _err(e, f"link index {index} not found") from e
        return _link_from_msg(msgs[0])

    def find_link(self, name: str) -> Link | None:
        try:
            return self.get_link(name)
        except LinkNotFound:
            return None

    def find_link_by_index(self, index: int) -> Link | None:
        try:
            return self.get_link_by_index(index)
        except LinkNotFound:
            return None

    def links(self) -> list[Link]:
        return [_link_from_msg(m) for m in self._dump("get_links")]

    def ensure_bridge(
        self, name: str, *, mtu: int = 0, vlan_filtering: bool = False, mac: str = ""
    ) -> tuple[Link, bool]:
        """Create the bridge if missing and set it up; returns (link, created).

        An existing non-bridge link with that name is a Conflict.
        """
        kw: dict[str, Any] = {"ifname": name, "kind": "bridge"}
        if mtu:
            kw["mtu"] = mtu
        if vlan_filtering:
            kw["br_vlan_filtering"] = 1
        if mac:
            kw["address"] = mac
        created = True
        try:
            self._ipr.link("add", **kw)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise _err(e, f"failed to create bridge {name!r}") from e
            created = False
        link = self.get_link(name)
        if link.kind != "bridge":
            raise Conflict(f"{name!r} already exists but is not a bridge")
        if vlan_filtering and not created:
            self.set_link(link.index, br_vlan_filtering=1, kind="bridge")
        if not link.up:
            self.set_up(link.index)
        return self.get_link_by_index(link.index), created

    def ensure_owned_bridge(
        self, name: str, *, owner: str, mtu: int = 0, mac: str = "", no_ipv6_ll: bool = False
    ) -> tuple[Link, bool]:
        """The bridge ``name``: the existing one as it is, or a new one carrying
        ``owner`` as its alias from birth; returns (link, created).

        Creation and alias go to the kernel in one batch (the new link is asked for
        by a chosen ifindex, so the alias can only land on it): a crash never
        leaves a bridge kanal made without its mark. ``no_ipv6_ll``: it never gets
        an IPv6 link-local address. Raises Conflict when a link of another kind
        has that name.
        """
        from kanal.netlink.batch import Batch, free_index, raw_socket

        for _ in range(20):
            link = self.find_link(name)
            if link is not None:
                if link.kind != "bridge":
                    raise Conflict(f"{name!r} already exists but is not a bridge")
                return link, False
            index = free_index()
            with raw_socket() as s:
                b = Batch(s)
                b.add_link("bridge", name, mtu=mtu, index=index, exist_ok=True)
                b.set_link(index=index, alias=owner, mac=mac)
                if no_ipv6_ll:  # no fe80:: of its own: no DAD/MLD, nothing left by a port
                    b.set_link(index=index, no_ipv6_link_local=True)
                try:
                    b.commit()
                except LinkNotFound:
                    continue  # not created (name or index taken): look again
            link = self.find_link(name)
            if link is not None and link.index == index:
                return link, True
        raise Internal(f"failed to create bridge {name!r}")

    def del_owned_link(self, name: str, owner: str) -> bool:
        """Delete link ``name`` only if its alias is ``owner``; False when absent or
        not ours (someone else's link of that name is never touched)."""
        link = self.find_link(name)
        if link is None or link.alias != owner:
            return False
        return self.del_link(index=link.index)

    def set_link(self, index: int, **attrs: Any) -> None:
        try:
            self._ipr.link("set", index=index, **attrs)
        except NetlinkError as e:
            raise _err(e, f"failed to set link {index} {sorted(attrs)}") from e

    def set_up(self, index: int) -> None:
        self.set_link(index, state="up")

    def set_down(self, index: int) -> None:
        self.set_link(index, state="down")

    def set_promisc(self, index: int, on: bool = True) -> None:
        self.set_link(index, flags=IFF_PROMISC if on else 0, change=IFF_PROMISC)

    def vlan_add(
        self,
        index: int,
        vid: int,
        *,
        pvid: bool = False,
        untagged: bool = False,
        self_: bool = False,
        vid_end: int = 0,
    ) -> None:
        flags = (0x2 if pvid else 0) | (0x4 if untagged else 0)
        info: dict[str, Any] = {"vid": vid, "flags": flags}
        kw: dict[str, Any] = {"index": index, "vlan_info": info}
        if self_:
            kw["vlan_flags"] = "self"
        try:
            if vid_end and vid_end > vid:
                self._ipr.vlan_filter(
                    "add", index=index, vlan_info={"vid": vid, "flags": flags | 0x8}
                )
                self._ipr.vlan_filter(
                    "add", index=index, vlan_info={"vid": vid_end, "flags": flags | 0x10}
                )
            else:
                self._ipr.vlan_filter("add", **kw)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise _err(e, f"failed to add vlan {vid} on {index}") from e

    def vlan_del(self, index: int, vid: int, *, self_: bool = False) -> None:
        kw: dict[str, Any] = {"index": index, "vlan_info": {"vid": vid}}
        if self_:
            kw["vlan_flags"] = "self"
        try:
            self._ipr.vlan_filter("del", **kw)
        except NetlinkError as e:
            if e.code not in (errno.ENOENT, errno.EINVAL):
                raise _err(e, f"failed to delete vlan {vid} on {index}") from e

    def del_link(self, name: str | None = None, *, index: int = 0) -> bool:
        """Delete a link; False if it did not exist (DEL is idempotent)."""
        try:
            if index:
                self._ipr.link("del", index=index)
            else:
                self._ipr.link("del", ifname=name)
        except NetlinkError as e:
            if e.code in (errno.ENODEV, errno.ENOENT):
                return False
            raise _err(e, f"failed to delete link {name or index}") from e
        return True

    # ---- addresses ----------------------------------------------------------
    def del_addr(self, index: int, iface: Interface) -> bool:
        try:
            self._ipr.addr(
                "del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen
            )
        except NetlinkError as e:
            if e.code in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT):
                return False
            raise _err(e, f"failed to delete address {iface}") from e
        return True

    def addrs(self, index: int | None = None, family: int = 0) -> list[Addr]:
        kw: dict[str, Any] = {}
        if index is not None:
            kw["index"] = index
        if family:
            kw["family"] = family
        out = []
        for m in self._dump("get_addr", **kw):
            ip = m.get_attr("IFA_ADDRESS")
            if m["family"] == socket.AF_INET:
                ip = m.get_attr("IFA_LOCAL") or ip
            flags = m.get_attr("IFA_FLAGS") or m["flags"]
            out.append(Addr(m["index"], ipaddress.ip_interface(f"{ip}/{m['prefixlen']}"), flags))
        return out

    # ---- routes -------------------------------------------------------------
    def macvlan_mode(self, index: int) -> str:
        """The mode name (bridge, private, ...) of the macvlan with ``index``."""
        try:
            msg = self._ipr.link("get", index=index)[0]
        except NetlinkError as e:
            raise _err(e, f"link index {index} not found") from e
        info = msg.get_attr("IFLA_LINKINFO")
        data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
        mode = data.get_attr("IFLA_MACVLAN_MODE") if data is not None else None
        if isinstance(mode, str):  # pyroute2 decodes it to the name already
            return mode
        names = {1: "private", 2: "vepa", 4: "bridge", 8: "passthru", 16: "source"}
        return names.get(int(mode or 0), str(mode))

    def routes(
        self, *, oif: int | None = None, table: int | None = None, family: int = 0
    ) -> list[Route]:
        kw: dict[str, Any] = {}
        if family:
            kw["family"] = family
        if table is not None:
            kw["table"] = table
        out = []
        for m in self._dump("get_routes", **kw):
            if m["type"] not in (1,):  # unicast only
                continue
            o = m.get_attr("RTA_OIF") or 0
            if oif is not None and o != oif:
                continue
            fam = m["family"]
            dst = m.get_attr("RTA_DST") or ("0.0.0.0" if fam == socket.AF_INET else "::")
            gw = m.get_attr("RTA_GATEWAY")
            out.append(
                Route(
                    dst=ipaddress.ip_network(f"{dst}/{m['dst_len']}", strict=False),
                    gateway=ipaddress.ip_address(gw) if gw else None,
                    oif=o,
                    table=m.get_attr("RTA_TABLE") or m["table"],
                    scope=m["scope"],
                    priority=m.get_attr("RTA_PRIORITY") or 0,
                )
            )
        return out


@contextmanager
def netlink(netns_fd: int | None = None) -> Iterator[Netlink]:
    nl = Netlink(netns_fd)
    try:
        yield nl
    finally:
        nl.close()
