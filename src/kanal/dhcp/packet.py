"""DHCPv4 messages (RFC 2131/2132, classless routes RFC 3442): encode and decode."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from kanal.errors import DecodeError

__all__ = [
    "ACK",
    "DISCOVER",
    "NAK",
    "OFFER",
    "RELEASE",
    "REQUEST",
    "Message",
    "decode_classless_routes",
    "encode_classless_routes",
]

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
MAGIC = b"\x63\x82\x53\x63"
_HEAD = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")

OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_DNS = 6
OPT_HOSTNAME = 12
OPT_DOMAIN = 15
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_MSG_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAMS = 55
OPT_T1 = 58
OPT_T2 = 59
OPT_CLIENT_ID = 61
OPT_CLASSLESS_ROUTES = 121
OPT_END = 255
OPT_PAD = 0

V4 = ipaddress.IPv4Address
ANY = V4(0)  # immutable, so one shared default is safe
Route = tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]


@dataclass
class Message:
    op: int  # 1 request, 2 reply
    xid: int
    chaddr: bytes  # 6-byte MAC
    ciaddr: V4 = ANY
    yiaddr: V4 = ANY
    siaddr: V4 = ANY
    flags: int = 0
    secs: int = 0
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def msg_type(self) -> int:
        v = self.options.get(OPT_MSG_TYPE, b"")
        return v[0] if v else 0

    def addr_option(self, code: int) -> V4 | None:
        v = self.options.get(code)
        return V4(v[:4]) if v and len(v) >= 4 else None

    def addr_list(self, code: int) -> list[V4]:
        v = self.options.get(code, b"")
        return [V4(v[i : i + 4]) for i in range(0, len(v) - len(v) % 4, 4)]

    def u32_option(self, code: int) -> int | None:
        v = self.options.get(code)
        return struct.unpack("!I", v[:4])[0] if v and len(v) >= 4 else None

    def encode(self) -> bytes:
        head = _HEAD.pack(
            self.op,
            1,
            6,
            0,
            self.xid,
            self.secs,
            self.flags,
            self.ciaddr.packed,
            self.yiaddr.packed,
            self.siaddr.packed,
            b"\0" * 4,
            self.chaddr.ljust(16, b"\0"),
            b"\0" * 64,
            b"\0" * 128,
        )
        opts = bytearray(MAGIC)
        for code, value in self.options.items():
            # Long values are split over repeated options (RFC 3396).
            for i in range(0, max(len(value), 1), 255):
                chunk = value[i : i + 255]
                opts += bytes((code, len(chunk))) + chunk
        opts.append(OPT_END)
        data = head + bytes(opts)
        return data.ljust(300, b"\0")  # BOOTP minimum size, some servers insist

    @classmethod
    def decode(cls, data: bytes) -> Message:
        if len(data) < _HEAD.size + 4 or data[_HEAD.size : _HEAD.size + 4] != MAGIC:
            raise DecodeError("not a DHCP message")
        (op, _ht, hlen, _hops, xid, secs, flags, ci, yi, si, _gi, ch, _sn, _fi) = _HEAD.unpack_from(
            data
        )
        options: dict[int, bytes] = {}
        i = _HEAD.size + 4
        while i < len(data):
            code = data[i]
            if code == OPT_END:
                break
            if code == OPT_PAD:
                i += 1
                continue
            if i + 1 >= len(data):
                raise DecodeError("truncated DHCP option")
            n = data[i + 1]
            value = data[i + 2 : i + 2 + n]
            if len(value) != n:
                raise DecodeError("truncated DHCP option")
            options[code] = options.get(code, b"") + value
            i += 2 + n
        return cls(op, xid, ch[: min(hlen, 16)], V4(ci), V4(yi), V4(si), flags, secs, options)


def encode_classless_routes(routes: list[Route]) -> bytes:
    out = bytearray()
    for net, gw in routes:
        n = net.prefixlen
        out.append(n)
        out += net.network_address.packed[: (n + 7) // 8]
        out += gw.packed
    return bytes(out)


def decode_classless_routes(data: bytes) -> list[Route]:
    routes: list[Route] = []
    i = 0
    while i < len(data):
        n = data[i]
        if n > 32:
            raise DecodeError("bad classless route prefix length")
        k = (n + 7) // 8
        if i + 1 + k + 4 > len(data):
            raise DecodeError("truncated classless route")
        dst = data[i + 1 : i + 1 + k].ljust(4, b"\0")
        gw = data[i + 1 + k : i + 5 + k]
        routes.append((ipaddress.IPv4Network((V4(dst), n)), V4(gw)))
        i += 5 + k
    return routes
