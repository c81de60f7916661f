"""``ip route get``: which link the kernel would send a packet for an address out of.

One RTM_GETROUTE on a raw rtnetlink socket (stdlib only, and ``_socket`` rather than
``socket``, whose enums cost a plugin exec ~5 ms: portmap calls it on its exec path).
Runs in the calling thread's network namespace.
"""

from __future__ import annotations

import _socket
import os
import struct

from kanal.netlink import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress

__all__ = ["route_link"]

RTM_NEWROUTE = 24
RTM_GETROUTE = 26
NLM_F_REQUEST = 1
_NLMSG_ERROR = 2


def route_link(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The name of the link a packet to ``ip`` leaves by; "" when there is no route."""
    family = _socket.AF_INET if ip.version == 4 else _socket.AF_INET6
    body = struct.pack("=BBBBBBBBI", family, ip.max_prefixlen, 0, 0, 0, 0, 0, 0, 0)
    body += wire.nla(wire.RTA_DST, ip.packed)
    seq = int.from_bytes(os.urandom(3), "big")
    s = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, 0)
    try:
        s.bind((0, 0))
        s.sendall(wire.header(body, RTM_GETROUTE, NLM_F_REQUEST, seq))
        data = s.recv(1 << 16)
    finally:
        s.close()
    off = 0
    while off + 16 <= len(data):
        length, mtype, _flags, rseq, _pid = struct.unpack_from("=LHHLL", data, off)
        if length < 16:
            break
        if rseq == seq and mtype == _NLMSG_ERROR:
            return ""  # e.g. ENETUNREACH
        if rseq == seq and mtype == RTM_NEWROUTE:
            pos, end = off + 16 + 12, off + length
            while pos + 4 <= end:
                alen, atype = struct.unpack_from("=HH", data, pos)
                if alen < 4:
                    break
                if atype & 0x3FFF == wire.RTA_OIF:
                    (oif,) = struct.unpack_from("=I", data, pos + 4)
                    try:
                        return _socket.if_indextoname(oif)
                    except OSError:
                        return ""
                pos += (alen + 3) & ~3
        off += (length + 3) & ~3
    return ""
