"""VXLAN miss reports (parsed from rtnetlink bytes) and the announcement frames."""

from __future__ import annotations

import ipaddress
import socket
import struct

from kanal.netlink.neighmiss import (
    AF_BRIDGE,
    NDA_DST,
    NDA_LLADDR,
    RTM_GETNEIGH,
    arp_announcement,
    na_announcement,
    parse_misses,
)


def _attr(kind: int, val: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(val), kind) + val
    return raw + b"\0" * (-len(raw) % 4)


def _msg(mtype: int, family: int, ifindex: int, attrs: bytes) -> bytes:
    body = struct.pack("=B3xiHBB", family, ifindex, 0x04, 0, 0) + attrs
    return struct.pack("=LHHLL", 16 + len(body), mtype, 0, 0, 0) + body


def test_l3_misses_are_parsed_and_everything_else_skipped() -> None:
    v4 = _msg(RTM_GETNEIGH, AF_BRIDGE, 7, _attr(NDA_DST, socket.inet_aton("10.0.0.9"))
              + _attr(NDA_LLADDR, b"\0" * 6))  # fmt: skip
    v6 = _msg(RTM_GETNEIGH, AF_BRIDGE, 8, _attr(NDA_DST, ipaddress.IPv6Address("fd00::9").packed))
    l2 = _msg(RTM_GETNEIGH, AF_BRIDGE, 7, _attr(NDA_LLADDR, b"\x02\0\0\0\0\x01"))
    # newer kernels: the address's family, and no NDA_LLADDR
    inet = _msg(RTM_GETNEIGH, socket.AF_INET, 7, _attr(NDA_DST, b"\x0a\0\0\x01"))
    other_family = _msg(RTM_GETNEIGH, socket.AF_PACKET, 7, _attr(NDA_DST, b"\x0a\0\0\x02"))
    newneigh = _msg(28, AF_BRIDGE, 7, _attr(NDA_DST, b"\x0a\0\0\x01"))
    got = parse_misses(v4 + l2 + inet + other_family + newneigh + v6)
    assert [(m.ifindex, m.ip) for m in got] == [(7, "10.0.0.9"), (7, "10.0.0.1"), (8, "fd00::9")]
    assert parse_misses(b"") == [] and parse_misses(v4[:20]) == []
    bad_len = struct.pack("=LHHLL", 8, RTM_GETNEIGH, 0, 0, 0) + v4[16:]
    assert parse_misses(bad_len) == []


def test_gratuitous_arp_reply() -> None:
    f = arp_announcement("10.1.2.3", "02:42:0a:01:02:03")
    mac = bytes.fromhex("02420a010203")
    assert f[:6] == b"\xff" * 6 and f[6:12] == mac and f[12:14] == b"\x08\x06"
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", f[14:22])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 2)  # a reply
    sha, spa, tha, tpa = f[22:28], f[28:32], f[32:38], f[38:42]
    assert sha == tha == mac and spa == tpa == socket.inet_aton("10.1.2.3")  # gratuitous
    assert len(f) == 42


def _csum(data: bytes) -> int:
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data + b"\0" * (len(data) % 2)))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_unsolicited_neighbour_advertisement() -> None:
    f = na_announcement("fd00::5", "02:42:0a:00:00:05")
    assert f[:6] == bytes.fromhex("333300000001") and f[12:14] == b"\x86\xdd"
    ip6 = f[14:54]
    plen, nxt, hops = struct.unpack("!HBB", ip6[4:8])
    src, dst = ip6[8:24], ip6[24:40]
    assert (nxt, hops) == (58, 255)
    assert src == ipaddress.IPv6Address("fd00::5").packed
    assert dst == ipaddress.IPv6Address("ff02::1").packed
    icmp = f[54:]
    assert len(icmp) == plen == 32
    typ, code, _, flags = struct.unpack("!BBHI", icmp[:8])
    assert (typ, code, flags) == (136, 0, 0x20000000)  # override, not solicited
    assert icmp[8:24] == src and icmp[24:26] == b"\x02\x01" and icmp[26:32] == f[6:12]
    pseudo = src + dst + struct.pack("!I3xB", plen, 58)
    assert _csum(pseudo + icmp) == 0xFFFF  # the checksum verifies
