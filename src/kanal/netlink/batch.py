"""Pipelined rtnetlink requests: the fast path's way to talk to the kernel.

pyroute2's high-level ``IPRoute`` makes one round trip per call and decodes every
reply fully (link dumps carry dozens of attributes); an ADD made of ~15 such calls
costs ~20 ms of Python. A :class:`Batch` packs requests with kanal.netlink.wire
(struct, byte-identical to pyroute2's encoder but ~10x cheaper; pyroute2's message
classes only for the rare bridge-port attributes), sends them back to back on one
raw socket and reads only the ACKs, so a
whole step (create a veth attached and up; address + routes in the container)
is one system-call round with no decoding.

Requests that need no answer but an ACK only; anything that must read state uses
:class:`kanal.netlink.handle.Netlink`.
"""

from __future__ import annotations

import _socket
import errno
import os
import struct

from kanal._dataclass import dataclass
from kanal.errors import Conflict, Internal, KanalError, NotFound
from kanal.netlink import wire
from kanal.netlink.wire import (
    IFA_F_NODAD,
    IFF_UP,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    RT_TABLE_MAIN,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTM_SETLINK,
    RTN_UNICAST,
    RTPROT_BOOT,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from typing import Any, Self

    Iface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
    Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = ["Batch", "LinkNotFound", "free_index", "raw_socket"]


class LinkNotFound(NotFound):
    """No link with that name or index in the namespace (also exported by
    :mod:`kanal.netlink.handle`)."""


def free_index() -> int:
    """An ifindex no link of this namespace has, to create a link with: a request
    that follows in the same batch can then name the new link, and only it (a
    kill -9 cannot split one batch: the kernel runs it within the send)."""
    low, high = 1 << 20, (1 << 30) - 1
    while True:
        index = low + int.from_bytes(os.urandom(4), "big") % (high - low + 1)
        try:
            _socket.if_indextoname(index)
        except OSError:
            return index


class NetlinkSocket(_socket.socket):
    """A raw socket usable with ``with`` (``_socket`` spares the exec path the
    ``socket`` module, whose enums cost ~5 ms to import)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_socket() -> NetlinkSocket:
    """A NETLINK_ROUTE socket in the calling thread's namespace."""
    s = NetlinkSocket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, 0)
    s.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, 1 << 20)
    s.bind((0, 0))
    return s


@dataclass
class _Req:
    seq: int
    what: str
    ok: frozenset[int]


class Batch:
    """Queue requests with the ``add_*``/``set_*``/``del_*`` methods, then :meth:`commit`.

    ``ok`` errnos per request are treated as success (e.g. EEXIST for idempotent
    adds, ENODEV/ESRCH for deletes). The first failing request is raised as a
    :class:`BatchError` mapped to kanal's taxonomy (LinkNotFound, Conflict, Internal).
    """

    def __init__(self, sock: _socket.socket) -> None:
        self._sock = sock
        self._msgs: list[bytes] = []
        self._reqs: list[_Req] = []
        self._seq = int.from_bytes(os.urandom(2), "big") << 8

    def __len__(self) -> int:
        return len(self._msgs)

    def _push(self, msg: Any, mtype: int, flags: int, what: str, ok: tuple[int, ...]) -> None:
        self._seq += 1
        msg["header"]["type"] = mtype
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self._msgs.append(bytes(msg.data))
        self._reqs.append(_Req(self._seq, what, frozenset(ok)))

    def _push_raw(
        self, body: bytes, mtype: int, flags: int, what: str, ok: tuple[int, ...]
    ) -> None:
        """Queue a message packed by kanal.netlink.wire (everything but the header)."""
        self._seq += 1
        self._msgs.append(wire.header(body, mtype, NLM_F_REQUEST | NLM_F_ACK | flags, self._seq))
        self._reqs.append(_Req(self._seq, what, frozenset(ok)))

    # ---- links --------------------------------------------------------------
    def add_veth(
        self,
        name: str,
        peer_name: str,
        peer_netns_fd: int,
        *,
        mac: str = "",
        peer_mac: str = "",
        mtu: int = 0,
        master: int = 0,
        up: bool = False,
        index: int = 0,
        txqlen: int | None = None,
    ) -> None:
        """One request: the pair, the peer made in ``peer_netns_fd``, this end
        attached to ``master`` and up; ``index``: this end's ifindex (free_index);
        ``txqlen``: both ends'."""
        body = wire.veth_create_msg(
            name,
            peer_name,
            peer_netns_fd,
            mac=mac,
            peer_mac=peer_mac,
            mtu=mtu,
            master=master,
            up=up,
            index=index,
            txqlen=txqlen,
        )
        self._push_raw(
            body,
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL,
            f"failed to create veth {name!r}/{peer_name!r}",
            (),
        )

    def set_link(
        self,
        *,
        index: int = 0,
        name: str = "",
        up: bool | None = None,
        master: int | None = None,
        brport: dict[str, int] | None = None,
        alias: str | None = None,
        no_ipv6_link_local: bool = False,
        mac: str = "",
        mtu: int = 0,
    ) -> None:
        """Change a link found by index, or by name when ``index`` is 0.

        ``no_ipv6_link_local`` sets addrgenmode none: once up, the link gets no
        fe80:: address and so sends no DAD, MLD or router solicitation (must be
        set while the link is still down).
        """
        if (
            brport
            and set(brport) <= set(wire.BRPORT_ATTRS)
            and not (
                master is not None or alias is not None or no_ipv6_link_local or up is not None
            )
        ):
            body = wire.brport_msg(index, "" if index else name, brport)
            self._push_raw(body, RTM_NEWLINK, 0, f"failed to set bridge port {name or index}", ())
            return
        if not brport:
            attrs_raw = wire.link_attrs(
                name="" if index else name, mac=mac, mtu=mtu, master=master, alias=alias
            )
            if no_ipv6_link_local:
                attrs_raw.append(wire.no_ipv6_link_local())
            flag = 0 if up is None else (IFF_UP if up else 0)
            body = wire.link_msg(
                index, flags=flag, change=0 if up is None else IFF_UP, attrs=attrs_raw
            )
            self._push_raw(body, RTM_SETLINK, 0, f"failed to set link {name or index}", ())
            return
        self._set_link_pyroute2(index, name, up, master, brport, alias, no_ipv6_link_local)

    def _set_link_pyroute2(
        self,
        index: int,
        name: str,
        up: bool | None,
        master: int | None,
        brport: dict[str, int] | None,
        alias: str | None,
        no_ipv6_link_local: bool,
    ) -> None:
        """:meth:`set_link` with bridge-port keys kanal's own packing lacks: pyroute2
        packs it (rare, so its import cost is paid only then)."""
        # lazy: the rare bridge-port keys only (pyroute2 costs an exec ~100 ms)
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        m = ifinfmsg()
        m["index"] = index
        attrs: list[tuple[str, Any]] = []
        if not index:
            attrs.append(("IFLA_IFNAME", name))
        if master is not None:
            attrs.append(("IFLA_MASTER", master))
        if alias is not None:
            attrs.append(("IFLA_IFALIAS", alias))
        if no_ipv6_link_local:
            gen_mode = {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", 1)]}
            attrs.append(("IFLA_AF_SPEC", {"attrs": [("AF_INET6", gen_mode)]}))
        if brport:
            data = {"attrs": [(f"IFLA_BRPORT_{k.upper()}", v) for k, v in brport.items()]}
            kind = [("IFLA_INFO_SLAVE_KIND", "bridge"), ("IFLA_INFO_SLAVE_DATA", data)]
            attrs.append(("IFLA_LINKINFO", {"attrs": kind}))
        m["attrs"] = attrs
        if up is not None:
            m["change"] = IFF_UP
            m["flags"] = IFF_UP if up else 0
        self._push(
            m,
            RTM_SETLINK if not brport else RTM_NEWLINK,
            0,
            f"failed to set link {name or index}",
            (),
        )

    def rename_link(self, index: int, name: str) -> None:
        """Rename link ``index`` (the kernel refuses while it is up: set it down first)."""
        body = wire.link_msg(index, attrs=[wire.nla_str(wire.IFLA_IFNAME, name)])
        self._push_raw(body, RTM_SETLINK, 0, f"failed to rename link {index} to {name}", ())

    def del_link(self, *, index: int = 0, name: str = "") -> None:
        body = wire.link_msg(index, attrs=wire.link_attrs(name="" if index else name))
        self._push_raw(
            body,
            RTM_DELLINK,
            0,
            f"failed to delete link {name or index}",
            (errno.ENODEV, errno.ENOENT),
        )

    # ---- addresses ----------------------------------------------------------
    def add_addr(
        self, index: int, iface: Iface, *, nodad: bool = False, exist_ok: bool = False
    ) -> None:
        v4 = iface.version == 4
        bcast = None
        if v4 and iface.network.prefixlen < 31:
            bcast = iface.network.broadcast_address.packed
        body = wire.addr_msg(
            wire.AF_INET if v4 else wire.AF_INET6,
            iface.network.prefixlen,
            index,
            iface.ip.packed,
            broadcast=bcast,
            ifa_flags=IFA_F_NODAD if nodad and not v4 else 0,
        )
        self._push_raw(
            body,
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
            f"failed to add IP addr {iface} on link {index}",
            (errno.EEXIST,) if exist_ok else (),
        )

    def del_addr(self, index: int, iface: Iface) -> None:
        fam = wire.AF_INET if iface.version == 4 else wire.AF_INET6
        body = wire.addr_msg(fam, iface.network.prefixlen, index, iface.ip.packed)
        self._push_raw(
            body,
            RTM_DELADDR,
            0,
            f"failed to delete address {iface}",
            (errno.EADDRNOTAVAIL, errno.ENODEV),
        )

    # ---- routes -------------------------------------------------------------
    def _route(
        self,
        dst: ipaddress.IPv4Network | ipaddress.IPv6Network,
        gateway: Addr | None,
        oif: int,
        scope: int | None,
        table: int | None,
        priority: int,
        mtu: int,
        advmss: int,
        src: Addr | None,
        *,
        delete: bool = False,
    ) -> bytes:
        tbl = table if table is not None else RT_TABLE_MAIN
        if delete:
            # The kernel matches every non-zero field of a delete: leave protocol and
            # type unset, and scope NOWHERE (255) to match any scope.
            proto, rtype, sc = 0, 0, 255 if scope is None else scope
        else:
            proto, rtype = RTPROT_BOOT, RTN_UNICAST
            sc = scope if scope is not None else (0 if gateway is not None or not oif else 253)
        return wire.route_msg(
            wire.AF_INET if dst.version == 4 else wire.AF_INET6,
            dst.prefixlen,
            table=tbl,
            proto=proto,
            scope=sc,
            rtype=rtype,
            dst=dst.network_address.packed if dst.prefixlen else None,
            gateway=gateway.packed if gateway is not None else None,
            oif=oif,
            priority=priority,
            prefsrc=src.packed if src is not None else None,
            mtu=mtu,
            advmss=advmss,
        )

    def add_route(
        self,
        dst: ipaddress.IPv4Network | ipaddress.IPv6Network,
        *,
        gateway: Addr | None = None,
        oif: int = 0,
        scope: int | None = None,
        table: int | None = None,
        priority: int = 0,
        mtu: int = 0,
        advmss: int = 0,
        src: Addr | None = None,
        exist_ok: bool = False,
    ) -> None:
        body = self._route(dst, gateway, oif, scope, table, priority, mtu, advmss, src)
        self._push_raw(
            body,
            RTM_NEWROUTE,
            NLM_F_CREATE | NLM_F_EXCL,
            f"failed to add route '{dst} via {gateway} dev {oif}'",
            (errno.EEXIST,) if exist_ok else (),
        )

    def del_route(
        self,
        dst: ipaddress.IPv4Network | ipaddress.IPv6Network,
        *,
        gateway: Addr | None = None,
        oif: int = 0,
        table: int | None = None,
        scope: int | None = None,
    ) -> None:
        body = self._route(dst, gateway, oif, scope, table, 0, 0, 0, None, delete=True)
        self._push_raw(
            body, RTM_DELROUTE, 0, f"failed to delete route {dst}", (errno.ESRCH, errno.ENOENT)
        )

    def add_macvlan(
        self,
        name: str,
        master: int,
        mode: str,
        *,
        netns_fd: int = -1,
        mac: str = "",
        mtu: int = 0,
        index: int = 0,
        txqlen: int | None = None,
    ) -> None:
        """A macvlan on ``master`` (this namespace), made directly in ``netns_fd``;
        ``index``: the ifindex to give it (see :func:`free_index`)."""
        body = wire.macvlan_create_msg(
            name,
            master,
            wire.MACVLAN_MODES[mode],
            netns_fd=netns_fd,
            mac=mac,
            mtu=mtu,
            txqlen=txqlen,
            index=index,
        )
        self._push_raw(
            body, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, f"failed to create macvlan {name!r}", ()
        )

    def move_link(
        self, index: int, netns_fd: int, new_name: str, *, alias: str | None = None
    ) -> None:
        """Move link ``index`` into ``netns_fd``, renamed (and its alias set), at once."""
        self._push_raw(
            wire.link_move_msg(index, netns_fd, new_name, alias),
            RTM_SETLINK,
            0,
            f"failed to move link {index} as {new_name!r}",
            (),
        )

    def add_link(
        self,
        kind: str,
        name: str,
        *,
        mtu: int = 0,
        txqlen: int = -1,
        alias: str = "",
        up: bool = False,
        exist_ok: bool = False,
        index: int = 0,
    ) -> None:
        """A link of a kind that needs no data (ifb, bridge); EEXIST ok if asked.

        ``index``: the ifindex to create it with (see wire.link_create_msg)."""
        self._push_raw(
            wire.link_create_msg(
                kind, name, mtu=mtu, txqlen=txqlen, alias=alias, up=up, index=index
            ),
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL,
            f"failed to create {kind} {name!r}",
            (errno.EEXIST,) if exist_ok else (),
        )

    # ---- commit -------------------------------------------------------------
    def commit(self) -> list[int]:
        """Send everything and wait for every ACK; returns each request's errno.

        0 is success; an errno listed as ``ok`` for its request (say EEXIST) is
        returned as is, so the caller can tell "created" from "was already there".

        Raises the first real failure after all ACKs are read, so the socket is
        left clean and the caller knows exactly what happened.
        """
        if not self._msgs:
            return []
        self._sock.sendall(b"".join(self._msgs))
        want = {r.seq: i for i, r in enumerate(self._reqs)}
        results = [0] * len(self._reqs)
        pending = len(self._reqs)
        while pending:
            data = self._sock.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length, mtype, _flags, seq, _pid = struct.unpack_from("=LHHLL", data, off)
                if length < 16:
                    break
                if mtype == NLMSG_ERROR and seq in want:
                    (err,) = struct.unpack_from("=i", data, off + 16)
                    results[want.pop(seq)] = -err
                    pending -= 1
                off += (length + 3) & ~3
        self._msgs.clear()
        reqs, self._reqs = self._reqs, []
        for req, err in zip(reqs, results):
            if err and err not in req.ok:
                raise _mapped(req.what, err)
        return results


def _mapped(what: str, err: int) -> KanalError:
    if err in (errno.ENODEV,):
        return LinkNotFound(what, os.strerror(err))
    if err == errno.EEXIST:
        return Conflict(what, os.strerror(err))
    e = Internal(what, os.strerror(err))
    e.errno = err  # type: ignore[attr-defined]
    return e
