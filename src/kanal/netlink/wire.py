"""Hand-packed rtnetlink requests and decoded replies for the hot path.

pyroute2's generic NLA machinery costs ~0.5 ms of Python per message; a bridge
attachment sends about eight, and importing pyroute2 at all costs ~80 ms, more
than a whole plugin exec may take. These functions pack the same bytes with
``struct`` (tests/unit/netlink/test_wire.py checks them against pyroute2's
encoder, byte for byte) and decode the link and address messages the exec path
reads (tests/netns/test_netlink.py checks them against pyroute2's decoder). Only
what the fast path sends and reads is here; anything else goes through
pyroute2's message classes.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "addr_msg",
    "decode_addr",
    "decode_link",
    "link_msg",
    "messages",
    "nla",
    "nla_str",
    "nla_u8",
    "nla_u32",
    "route_msg",
    "veth_create_msg",
]

AF_INET = 2
AF_INET6 = 10

# linux/netlink.h
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NETLINK_ROUTE = 0
AF_NETLINK = 16
SOCK_DGRAM = 2

# linux/if.h, linux/if_addr.h, linux/rtnetlink.h: the flag and enum values both
# front ends (Batch and Netlink) and the steps use
IFF_UP = 0x1
IFF_PROMISC = 0x100
IFA_F_NODAD = 0x2
IFA_F_TENTATIVE = 0x40
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RTN_UNICAST = 1
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254

# linux/rtnetlink.h
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26

# linux/if_link.h, linux/if_addr.h, linux/rtnetlink.h
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_TXQLEN = 13
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_AF_SPEC = 26
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFLA_INET6_ADDR_GEN_MODE = 8
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
IFA_FLAGS = 8
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_PREFSRC = 7
RTA_METRICS = 8
RTA_TABLE = 15
RTAX_MTU = 2
RTAX_ADVMSS = 8

_HDR = struct.Struct("=LHHLL")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")


def nla(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)


def nla_u8(kind: int, v: int) -> bytes:
    return nla(kind, struct.pack("=B", v))


def nla_u32(kind: int, v: int) -> bytes:
    return nla(kind, struct.pack("=I", v))


def nla_str(kind: int, s: str) -> bytes:
    return nla(kind, s.encode() + b"\0")


def _mac(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def header(body: bytes, mtype: int, flags: int, seq: int) -> bytes:
    return _HDR.pack(16 + len(body), mtype, flags, seq, 0) + body


def link_msg(
    index: int = 0,
    *,
    flags: int = 0,
    change: int = 0,
    attrs: Iterable[bytes] = (),
    family: int = 0,
) -> bytes:
    """An ifinfomsg with its attributes (no netlink header)."""
    return _IFINFO.pack(family, 0, index, flags, change) + b"".join(attrs)


def link_attrs(
    name: str = "", mac: str = "", mtu: int = 0, master: int | None = None, alias: str | None = None
) -> list[bytes]:
    """A link's attributes; ``master=0`` is sent (it takes the link off its
    master), ``None`` leaves the master as it is."""
    out = []
    if name:
        out.append(nla_str(IFLA_IFNAME, name))
    if mac:
        out.append(nla(IFLA_ADDRESS, _mac(mac)))
    if mtu:
        out.append(nla_u32(IFLA_MTU, mtu))
    if master is not None:
        out.append(nla_u32(IFLA_MASTER, master))
    if alias is not None:
        out.append(nla_str(IFLA_IFALIAS, alias))
    return out


def no_ipv6_link_local() -> bytes:
    """IFLA_AF_SPEC { AF_INET6 { ADDR_GEN_MODE = none } }."""
    return nla(IFLA_AF_SPEC, nla(AF_INET6, nla_u8(IFLA_INET6_ADDR_GEN_MODE, 1)))


def veth_create_msg(
    name: str,
    peer: str,
    peer_netns_fd: int,
    *,
    mac: str = "",
    peer_mac: str = "",
    mtu: int = 0,
    master: int = 0,
    up: bool = False,
    index: int = 0,
    txqlen: int | None = None,
) -> bytes:
    """A veth pair, the peer made in ``peer_netns_fd``; ``index``: this end's ifindex
    (as link_create_msg); ``txqlen`` (both ends) when given, the kernel's default
    (1000) otherwise."""
    peer_attrs = [nla_str(IFLA_IFNAME, peer), nla_u32(IFLA_NET_NS_FD, peer_netns_fd)]
    if peer_mac:
        peer_attrs.append(nla(IFLA_ADDRESS, _mac(peer_mac)))
    if mtu:
        peer_attrs.append(nla_u32(IFLA_MTU, mtu))
    if txqlen is not None:
        peer_attrs.append(nla_u32(IFLA_TXQLEN, txqlen))
    peer_msg = link_msg(attrs=peer_attrs)
    info = nla(
        IFLA_LINKINFO,
        nla_str(IFLA_INFO_KIND, "veth") + nla(IFLA_INFO_DATA, nla(VETH_INFO_PEER, peer_msg)),
    )
    attrs = link_attrs(name=name, mac=mac, mtu=mtu, master=master or None)
    if txqlen is not None:
        attrs.append(nla_u32(IFLA_TXQLEN, txqlen))
    attrs.append(info)
    flags = 1 if up else 0
    return link_msg(index, flags=flags, change=flags, attrs=attrs)


def addr_msg(
    family: int,
    prefixlen: int,
    index: int,
    local: bytes,
    *,
    broadcast: bytes | None = None,
    ifa_flags: int = 0,
) -> bytes:
    attrs = nla(IFA_LOCAL, local) + nla(IFA_ADDRESS, local)
    if broadcast is not None:
        attrs += nla(IFA_BROADCAST, broadcast)
    if ifa_flags:
        attrs += nla_u32(IFA_FLAGS, ifa_flags)
    return _IFADDR.pack(family, prefixlen, ifa_flags & 0xFF, 0, index) + attrs


def route_msg(
    family: int,
    dst_len: int,
    *,
    table: int,
    proto: int,
    scope: int,
    rtype: int,
    dst: bytes | None = None,
    gateway: bytes | None = None,
    oif: int = 0,
    priority: int = 0,
    prefsrc: bytes | None = None,
    mtu: int = 0,
    advmss: int = 0,
) -> bytes:
    attrs = [nla_u32(RTA_TABLE, table)]
    if dst is not None:
        attrs.append(nla(RTA_DST, dst))
    if gateway is not None:
        attrs.append(nla(RTA_GATEWAY, gateway))
    if oif:
        attrs.append(nla_u32(RTA_OIF, oif))
    if priority:
        attrs.append(nla_u32(RTA_PRIORITY, priority))
    if prefsrc is not None:
        attrs.append(nla(RTA_PREFSRC, prefsrc))
    metrics = b""
    if mtu:
        metrics += nla_u32(RTAX_MTU, mtu)
    if advmss:
        metrics += nla_u32(RTAX_ADVMSS, advmss)
    if metrics:
        attrs.append(nla(RTA_METRICS, metrics))
    t = table if table < 256 else 252
    return _RTMSG.pack(family, dst_len, 0, 0, t, proto, scope, rtype, 0) + b"".join(attrs)


IFLA_LINK = 5
IFLA_MACVLAN_MODE = 1
MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8, "source": 16}


def macvlan_create_msg(
    name: str,
    master: int,
    mode: int,
    *,
    netns_fd: int = -1,
    mac: str = "",
    mtu: int = 0,
    up: bool = False,
    index: int = 0,
    txqlen: int | None = None,
) -> bytes:
    """A macvlan on link ``master`` (an index in the sending namespace), created
    directly in ``netns_fd`` when given; ``index``: its ifindex (as link_create_msg)."""
    attrs = [nla_str(IFLA_IFNAME, name), nla_u32(IFLA_LINK, master)]
    if mac:
        attrs.append(nla(IFLA_ADDRESS, _mac(mac)))
    if mtu:
        attrs.append(nla_u32(IFLA_MTU, mtu))
    if txqlen is not None:
        attrs.append(nla_u32(IFLA_TXQLEN, txqlen))
    if netns_fd >= 0:
        attrs.append(nla_u32(IFLA_NET_NS_FD, netns_fd))
    attrs.append(
        nla(
            IFLA_LINKINFO,
            nla_str(IFLA_INFO_KIND, "macvlan")
            + nla(IFLA_INFO_DATA, nla_u32(IFLA_MACVLAN_MODE, mode)),
        )
    )
    flags = 1 if up else 0
    return link_msg(index, flags=flags, change=flags, attrs=attrs)


def link_move_msg(index: int, netns_fd: int, new_name: str, alias: str | None = None) -> bytes:
    """Move link ``index`` into ``netns_fd`` under ``new_name`` (one request)."""
    attrs = [nla_str(IFLA_IFNAME, new_name), nla_u32(IFLA_NET_NS_FD, netns_fd)]
    if alias is not None:
        attrs.append(nla_str(IFLA_IFALIAS, alias))
    return link_msg(index, attrs=attrs)


def link_create_msg(
    kind: str,
    name: str,
    *,
    mtu: int = 0,
    txqlen: int = -1,
    alias: str = "",
    up: bool = False,
    index: int = 0,
) -> bytes:
    """A link of a kind that needs no data (ifb, bridge, dummy). The kernel ignores
    ``alias`` at creation: set it with a change afterwards. ``index`` asks for that
    ifindex (EEXIST if taken), so a later request in the same batch can name the
    new link and nothing else."""
    attrs = [nla_str(IFLA_IFNAME, name)]
    if mtu:
        attrs.append(nla_u32(IFLA_MTU, mtu))
    if txqlen >= 0:
        attrs.append(nla_u32(IFLA_TXQLEN, txqlen))
    if alias:
        attrs.append(nla_str(IFLA_IFALIAS, alias))
    attrs.append(nla(IFLA_LINKINFO, nla_str(IFLA_INFO_KIND, kind)))
    flags = 1 if up else 0
    return link_msg(index, flags=flags, change=flags, attrs=attrs)


IFLA_INFO_SLAVE_KIND = 4
IFLA_INFO_SLAVE_DATA = 5
BRPORT_ATTRS = {"mode": 4, "learning": 8, "unicast_flood": 9, "isolated": 33}


def brport_msg(index: int, name: str, brport: dict[str, int]) -> bytes:
    """Bridge-port flags (hairpin ``mode``, ``isolated``, ...) of a link, by index or name.

    Raises KeyError for an attribute this encoder does not know.
    """
    data = b"".join(nla_u8(BRPORT_ATTRS[k], v) for k, v in brport.items())
    info = nla(
        IFLA_LINKINFO, nla_str(IFLA_INFO_SLAVE_KIND, "bridge") + nla(IFLA_INFO_SLAVE_DATA, data)
    )
    attrs = [] if index else [nla_str(IFLA_IFNAME, name)]
    return link_msg(index, attrs=[*attrs, info])


IFLA_BR_VLAN_FILTERING = 7


def bridge_create_msg(
    name: str, *, mtu: int = 0, mac: str = "", vlan_filtering: bool = False
) -> bytes:
    """A bridge (down), as pyroute2's ``link("add", kind="bridge", ...)`` makes it."""
    attrs = [nla_str(IFLA_IFNAME, name)]
    if mac:
        attrs.append(nla(IFLA_ADDRESS, _mac(mac)))
    if mtu:
        attrs.append(nla_u32(IFLA_MTU, mtu))
    data = nla(IFLA_INFO_DATA, nla_u8(IFLA_BR_VLAN_FILTERING, 1)) if vlan_filtering else b""
    attrs.append(nla(IFLA_LINKINFO, nla_str(IFLA_INFO_KIND, "bridge") + data))
    return link_msg(attrs=attrs)


# ---- decoding ---------------------------------------------------------------------

IFLA_OPERSTATE = 16
IFLA_PROMISCUITY = 30
_OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")


def messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, sequence number, payload) of each netlink message in ``data``."""
    off, n = 0, len(data)
    while off + 16 <= n:
        length, mtype, flags, seq, _pid = _HDR.unpack_from(data, off)
        if length < 16 or off + length > n:
            return
        yield mtype, flags, seq, data[off + 16 : off + length]
        off += (length + 3) & ~3


def parse_attrs(buf: bytes, off: int = 0) -> dict[int, bytes]:
    """Attribute type -> payload (the last one of a type wins; nested flag masked)."""
    out: dict[int, bytes] = {}
    n = len(buf)
    while off + 4 <= n:
        length, kind = struct.unpack_from("=HH", buf, off)
        if length < 4 or off + length > n:
            break
        out[kind & 0x3FFF] = buf[off + 4 : off + length]
        off += (length + 3) & ~3
    return out


def _u32(b: bytes | None) -> int:
    return struct.unpack("=I", b[:4])[0] if b and len(b) >= 4 else 0


def _str(b: bytes | None) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace") if b else ""


def mac_str(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def decode_link(
    payload: bytes,
) -> tuple[int, str, str, str, int, int, int, str, int, int, str, int]:
    """An RTM_NEWLINK payload: the fields of :class:`kanal.netlink.handle.Link`, in order
    (index, name, kind, mac, mtu, master, flags, alias, peer index, promiscuity,
    operstate, txqlen)."""
    _family, _type, index, flags, _change = _IFINFO.unpack_from(payload, 0)
    a = parse_attrs(payload, _IFINFO.size)
    kind = ""
    info = a.get(IFLA_LINKINFO)
    if info:
        kind = _str(parse_attrs(info).get(IFLA_INFO_KIND))
    op = a.get(IFLA_OPERSTATE)
    operstate = ""
    if op:
        operstate = _OPERSTATES[op[0]] if op[0] < len(_OPERSTATES) else str(op[0])
    address = a.get(IFLA_ADDRESS)
    return (
        index,
        _str(a.get(IFLA_IFNAME)),
        kind,
        mac_str(address) if address else "",
        _u32(a.get(IFLA_MTU)),
        _u32(a.get(IFLA_MASTER)),
        flags,
        _str(a.get(IFLA_IFALIAS)),
        _u32(a.get(IFLA_LINK)),
        _u32(a.get(IFLA_PROMISCUITY)),
        operstate,
        _u32(a.get(IFLA_TXQLEN)),
    )


def link_info_data(payload: bytes) -> dict[int, bytes]:
    """The IFLA_INFO_DATA attributes of an RTM_NEWLINK payload (kind-specific)."""
    info = parse_attrs(payload, _IFINFO.size).get(IFLA_LINKINFO)
    data = parse_attrs(info).get(IFLA_INFO_DATA) if info else None
    return parse_attrs(data) if data else {}


def addr_dump_msg(family: int = 0) -> bytes:
    """The body of an RTM_GETADDR dump request (every address of ``family``, 0: all)."""
    return _IFADDR.pack(family, 0, 0, 0, 0)


def decode_addr(payload: bytes) -> tuple[int, int, int, bytes, int]:
    """An RTM_NEWADDR payload: (family, prefixlen, index, address bytes, flags).

    The address is IFA_LOCAL for IPv4 (a peer address may be in IFA_ADDRESS),
    IFA_ADDRESS otherwise; the flags are IFA_FLAGS when present (all 32 bits).
    """
    family, prefixlen, flags, _scope, index = _IFADDR.unpack_from(payload, 0)
    a = parse_attrs(payload, _IFADDR.size)
    addr = a.get(IFA_ADDRESS, b"")
    if family == AF_INET:
        addr = a.get(IFA_LOCAL) or addr
    if IFA_FLAGS in a:
        flags = _u32(a[IFA_FLAGS]) or flags
    return family, prefixlen, index, addr, flags
