"""One rtnetlink socket in one namespace: typed reads and the slower idempotent ops.

The hot path writes through :mod:`kanal.netlink.batch` (pipelined, ACK-only);
this handle is for what must read kernel state (links, addresses, routes) and for
rarer changes (creating a bridge, VLAN entries). Links and addresses are read,
and the common link changes made, with kanal's own packing and decoding
(:mod:`kanal.netlink.wire`) on a raw socket: importing pyroute2 costs more than
a whole plugin exec may take. pyroute2's ``IPRoute`` is opened only for the rest
(routes, VLAN entries, unusual link attributes), on first use.

Every method translates kernel errors into kanal errors: a missing link is
:class:`LinkNotFound`, "already exists" is success where the operation is
declared idempotent (concurrent ADDs race on the same bridge: plugins#366).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import struct

from kanal._dataclass import dataclass
from kanal.errors import Conflict, Internal, KanalError
from kanal.netlink import wire
from kanal.netlink.batch import Batch, LinkNotFound, free_index, raw_socket
from kanal.netlink.ns import netns_socket, run_in_netns
from kanal.netlink.wire import (
    AF_NETLINK,
    IFF_PROMISC,
    IFF_UP,
    NETLINK_ROUTE,
    SOCK_DGRAM,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from typing import Any, Self

    from pyroute2.netlink.exceptions import NetlinkError

    Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
    Address = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = ["Addr", "Link", "LinkNotFound", "Netlink", "Route", "netlink"]


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
    """A Link from a pyroute2 message (the pyroute2 paths, VXLAN's)."""
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


def _errno_err(code: int, what: str) -> KanalError:
    """The kernel's answer ``code`` (an errno) to a request, as a kanal error."""
    if code in (errno.ENODEV, errno.ENOENT):
        return LinkNotFound(what, os.strerror(code))
    if code == errno.EEXIST:
        return Conflict(what, "file exists")
    return Internal(what, os.strerror(code))


class _DumpInterrupted(Exception):
    """The kernel's tables changed during a dump (NLM_F_DUMP_INTR): read it again."""


class Netlink:
    """rtnetlink in the current namespace (``netns_fd=None``) or in ``netns_fd``.

    Not thread-safe: open one per operation and close it (use :func:`netlink`).
    """

    def __init__(self, netns_fd: int | None = None) -> None:
        self._sock: _socket.socket = (
            raw_socket() if netns_fd is None else run_in_netns(netns_fd, raw_socket)
        )
        # pyroute2 is opened on first use only, in the same namespace.
        self._ns_fd = -1 if netns_fd is None else os.dup(netns_fd)
        self._ipr_handle: Any = None
        self._seq = int.from_bytes(os.urandom(3), "big")

    @property
    def _ipr(self) -> Any:
        if self._ipr_handle is None:
            # lazy: pyroute2 costs an exec ~100 ms; only routes, VLANs and rare attributes need it
            from pyroute2 import IPRoute

            if self._ns_fd < 0:
                self._ipr_handle = IPRoute()
            else:
                sock = netns_socket(self._ns_fd, AF_NETLINK, SOCK_DGRAM, NETLINK_ROUTE)
                self._ipr_handle = IPRoute(use_socket=sock)
        return self._ipr_handle

    def close(self) -> None:
        self._sock.close()
        if self._ns_fd >= 0:
            os.close(self._ns_fd)
            self._ns_fd = -1
        if self._ipr_handle is not None:
            self._ipr_handle.close()
            self._ipr_handle = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- raw requests -----------------------------------------------------------
    def _request(self, mtype: int, body: bytes, flags: int = 0) -> tuple[int, list[bytes]]:
        """Send one request; (errno or 0, the payloads of the reply messages).

        A dump (``NLM_F_DUMP``) collects every message up to NLMSG_DONE; raises
        :class:`_DumpInterrupted` when the kernel flags the dump inconsistent.
        """
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        seq = self._seq
        self._sock.sendall(wire.header(body, mtype, wire.NLM_F_REQUEST | flags, seq))
        out: list[bytes] = []
        interrupted = False
        while True:
            data = self._sock.recv(1 << 16)
            for t, f, s, payload in wire.messages(data):
                if s != seq:
                    continue  # a late answer to an earlier request
                if f & wire.NLM_F_DUMP_INTR:
                    interrupted = True
                if t == wire.NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    return code, out
                if t == wire.NLMSG_DONE:
                    if interrupted:
                        raise _DumpInterrupted
                    return 0, out
                out.append(payload)
                if not f & wire.NLM_F_MULTI and not flags & wire.NLM_F_ACK:
                    return 0, out

    def _ack(self, mtype: int, body: bytes, flags: int = 0) -> int:
        """A change, acknowledged: 0 or the errno."""
        return self._request(mtype, body, flags | wire.NLM_F_ACK)[0]

    def _rtnl_dump(self, mtype: int, body: bytes) -> list[bytes]:
        for _ in range(5):
            try:
                code, out = self._request(mtype, body, wire.NLM_F_DUMP)
            except _DumpInterrupted:
                continue
            if code:
                raise Internal(f"netlink dump {mtype} failed", os.strerror(code))
            return out
        raise Internal(f"netlink dump {mtype} interrupted 5 times")

    def _dump(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        """A pyroute2 dump (``get_routes``, ``get_neighbours``...), retried when interrupted."""
        # lazy: pyroute2 (~100 ms): only after IPRoute was opened
        from pyroute2.netlink.exceptions import NetlinkDumpInterrupted

        for _ in range(5):
            try:
                return list(getattr(self._ipr, method)(*args, **kwargs))
            except NetlinkDumpInterrupted:
                continue
        raise Internal(f"netlink dump {method} interrupted 5 times")

    def _get_link_payload(self, index: int, name: str, what: str) -> bytes:
        attrs = [] if index else [wire.nla_str(wire.IFLA_IFNAME, name)]
        code, msgs = self._request(wire.RTM_GETLINK, wire.link_msg(index, attrs=attrs))
        if code or not msgs:
            raise _errno_err(code or errno.ENODEV, what)
        return msgs[0]

    # ---- links ------------------------------------------------------------
    def get_link(self, name: str) -> Link:
        return Link(*wire.decode_link(self._get_link_payload(0, name, f"link {name!r} not found")))

    def get_link_by_index(self, index: int) -> Link:
        payload = self._get_link_payload(index, "", f"link index {index} not found")
        return Link(*wire.decode_link(payload))

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
        return [
            Link(*wire.decode_link(p)) for p in self._rtnl_dump(wire.RTM_GETLINK, wire.link_msg())
        ]

    def ensure_bridge(
        self, name: str, *, mtu: int = 0, vlan_filtering: bool = False, mac: str = ""
    ) -> tuple[Link, bool]:
        """Create the bridge if missing and set it up; returns (link, created).

        An existing non-bridge link with that name is a Conflict.
        """
        body = wire.bridge_create_msg(name, mtu=mtu, mac=mac, vlan_filtering=vlan_filtering)
        code = self._ack(wire.RTM_NEWLINK, body, wire.NLM_F_CREATE | wire.NLM_F_EXCL)
        if code and code != errno.EEXIST:
            raise _errno_err(code, f"failed to create bridge {name!r}")
        created = not code
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

    # What set_link packs itself; anything else goes through pyroute2.
    _LEAN_SET = frozenset({"state", "flags", "change", "mtu", "address", "txqlen", "master"})

    def set_link(self, index: int, **attrs: Any) -> None:
        what = f"failed to set link {index} {sorted(attrs)}"
        if not attrs.keys() <= self._LEAN_SET or ("flags" in attrs) != ("change" in attrs):
            try:
                self._ipr.link("set", index=index, **attrs)
            except Exception as e:
                if type(e).__name__ != "NetlinkError":
                    raise
                raise _err(e, what) from e
            return
        flags = change = 0
        if "state" in attrs:
            change |= IFF_UP
            flags |= IFF_UP if attrs["state"] == "up" else 0
        if "flags" in attrs:
            change |= int(attrs["change"])
            flags |= int(attrs["flags"]) & int(attrs["change"])
        raw = wire.link_attrs(
            mac=attrs.get("address") or "",
            mtu=int(attrs.get("mtu") or 0),
            master=int(attrs["master"]) if attrs.get("master") is not None else None,
        )
        if "txqlen" in attrs:
            raw.append(wire.nla_u32(wire.IFLA_TXQLEN, int(attrs["txqlen"])))
        body = wire.link_msg(index, flags=flags, change=change, attrs=raw)
        code = self._ack(wire.RTM_SETLINK, body)
        if code:
            raise _errno_err(code, what)

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
        # lazy: pyroute2 (~100 ms): only after IPRoute was opened
        from pyroute2.netlink.exceptions import NetlinkError

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
        # lazy: pyroute2 (~100 ms): only after IPRoute was opened
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            self._ipr.vlan_filter("del", **kw)
        except NetlinkError as e:
            if e.code not in (errno.ENOENT, errno.EINVAL):
                raise _err(e, f"failed to delete vlan {vid} on {index}") from e

    def del_link(self, name: str | None = None, *, index: int = 0) -> bool:
        """Delete a link; False if it did not exist (DEL is idempotent)."""
        body = wire.link_msg(index, attrs=wire.link_attrs(name="" if index else name or ""))
        code = self._ack(wire.RTM_DELLINK, body)
        if code in (errno.ENODEV, errno.ENOENT):
            return False
        if code:
            raise _errno_err(code, f"failed to delete link {name or index}")
        return True

    # ---- addresses ----------------------------------------------------------
    def del_addr(self, index: int, iface: Interface) -> bool:
        fam = wire.AF_INET if iface.version == 4 else wire.AF_INET6
        body = wire.addr_msg(fam, iface.network.prefixlen, index, iface.ip.packed)
        code = self._ack(wire.RTM_DELADDR, body)
        if code in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT):
            return False
        if code:
            raise _errno_err(code, f"failed to delete address {iface}")
        return True

    def addrs(self, index: int | None = None, family: int = 0) -> list[Addr]:
        out = []
        for p in self._rtnl_dump(wire.RTM_GETADDR, wire.addr_dump_msg(family)):
            fam, plen, idx, raw, flags = wire.decode_addr(p)
            if index is not None and idx != index:
                continue
            if family and fam != family:
                continue
            ip = ipaddress.ip_address(raw)
            out.append(Addr(idx, ipaddress.ip_interface(f"{ip}/{plen}"), flags))
        return out

    def macvlan_mode(self, index: int) -> str:
        """The mode name (bridge, private, ...) of the macvlan with ``index``."""
        payload = self._get_link_payload(index, "", f"link index {index} not found")
        mode = struct.unpack("=I", wire.link_info_data(payload).get(1, b"\0\0\0\0")[:4])[0]
        names = {1: "private", 2: "vepa", 4: "bridge", 8: "passthru", 16: "source"}
        return names.get(mode, str(mode))

    # ---- routes -------------------------------------------------------------
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
            dst = m.get_attr("RTA_DST") or ("0.0.0.0" if fam == wire.AF_INET else "::")
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


def netlink(netns_fd: int | None = None) -> Netlink:
    """A :class:`Netlink` (``with netlink() as nl:`` closes it)."""
    return Netlink(netns_fd)
