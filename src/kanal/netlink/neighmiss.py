"""VXLAN l3 misses, and answering them on a bridge at once.

A VXLAN device made with ``proxy`` answers its bridge's ARP requests (and IPv6
neighbour solicitations) from the neighbour table; with ``l3miss`` too, a request
for an address it has no entry for is *dropped* and the kernel tells rtnetlink's
neighbour group (an ``RTM_GETNEIGH`` with ``NDA_DST``, family ``AF_BRIDGE``, the
device's ifindex). The container that asked retries only after its
``retrans_time`` (1 s): that is the second a new endpoint can cost when one host's
agent programs it a moment after the first packet. (Older kernels report the
miss with family ``AF_BRIDGE``, newer ones with the address's family; the
device's ifindex tells it apart from a resolution request of the neighbour
table itself, which uses the same message.)

- :class:`MissListener` — a NETLINK_ROUTE socket on the neighbour group of one
  namespace; ``read()`` gives the misses waiting (:class:`Miss`: ifindex, ip).
- :func:`arp_announcement` / :func:`na_announcement` (pure) — the Ethernet frame
  of a gratuitous ARP reply / an unsolicited neighbour advertisement for
  (ip, mac): any host on the segment whose entry for ``ip`` is still INCOMPLETE
  takes it at once and sends what it had queued (entries it does not have are
  not created: Linux's default ``arp_accept=0``).
- :class:`Announcer` — sends such frames out of a bridge (``AF_PACKET``): the
  bridge floods them to its ports, the containers; the VXLAN port drops them
  (a proxy VXLAN device forwards no ARP reply), so nothing crosses the underlay.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
from dataclasses import dataclass

__all__ = [
    "Announcer",
    "Miss",
    "MissListener",
    "arp_announcement",
    "na_announcement",
    "parse_misses",
]

RTM_GETNEIGH = 30
RTMGRP_NEIGH = 0x4
NDA_DST = 1
NDA_LLADDR = 2
AF_BRIDGE = 7
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD


@dataclass(frozen=True)
class Miss:
    ifindex: int
    ip: str


def parse_misses(data: bytes) -> list[Miss]:
    """The l3 misses in a buffer of rtnetlink messages (anything else skipped). Pure."""
    out, off = [], 0
    while off + 16 <= len(data):
        length, mtype = struct.unpack_from("=LH", data, off)
        if length < 16 or off + length > len(data):
            break
        body, end = off + 16, off + length
        off += (length + 3) & ~3
        if mtype != RTM_GETNEIGH or end - body < 12:
            continue
        family, ifindex = struct.unpack_from("=B3xi", data, body)
        if family not in (AF_BRIDGE, socket.AF_INET, socket.AF_INET6):
            continue
        dst = lladdr = b""
        a = body + 12
        while a + 4 <= end:
            alen, kind = struct.unpack_from("=HH", data, a)
            if alen < 4:
                break
            val = data[a + 4 : a + alen]
            if kind & 0x7FFF == NDA_DST:
                dst = val
            elif kind & 0x7FFF == NDA_LLADDR:
                lladdr = val
            a += (alen + 3) & ~3
        if len(dst) not in (4, 16) or lladdr.strip(b"\0"):
            continue  # not an l3 miss (an l2 miss names a MAC and no address)
        out.append(Miss(ifindex, str(ipaddress.ip_address(dst))))
    return out


class MissListener:
    """The neighbour group of rtnetlink in the calling thread's namespace (make it in
    the right one: ``kanal.netlink.ns.netns_socket`` or from inside it)."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        if sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self.sock = sock
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, RTMGRP_NEIGH))
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[Miss]:
        """Every miss waiting (none: an empty list; never blocks). An overflowed
        socket (ENOBUFS) loses notifications: the askers retry, as without us."""
        out: list[Miss] = []
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError:
                continue  # ENOBUFS: some were lost
            out += parse_misses(data)

    def close(self) -> None:
        self.sock.close()


def _mac(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def arp_announcement(ip: str, mac: str) -> bytes:
    """A broadcast gratuitous ARP reply: ``ip`` is at ``mac``. Pure."""
    hw, addr = _mac(mac), ipaddress.IPv4Address(ip).packed
    eth = b"\xff" * 6 + hw + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + hw + addr + hw + addr
    return eth + arp


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def na_announcement(ip: str, mac: str) -> bytes:
    """An unsolicited neighbour advertisement (override) to all nodes: ``ip`` is at
    ``mac``. Pure."""
    hw, src = _mac(mac), ipaddress.IPv6Address(ip).packed
    dst = ipaddress.IPv6Address("ff02::1").packed
    # type 136, code 0, checksum, flags (O), target, option 2 (target link-layer)
    icmp = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + src + struct.pack("!BB", 2, 1) + hw
    pseudo = src + dst + struct.pack("!I3xB", len(icmp), 58)
    icmp = icmp[:2] + struct.pack("!H", _csum(pseudo + icmp)) + icmp[4:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(icmp), 58, 255) + src + dst
    eth = b"\x33\x33\x00\x00\x00\x01" + hw + struct.pack("!H", ETH_P_IPV6)
    return eth + ip6 + icmp


class Announcer:
    """Sends announcements out of bridges (one ``AF_PACKET`` socket, made in the
    calling thread's namespace unless given)."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC)

    def announce(self, bridge: str, ip: str, mac: str) -> bool:
        """Tell ``bridge``'s ports that ``ip`` is at ``mac``; False if it could not be
        sent (no such bridge: the network went meanwhile)."""
        if ipaddress.ip_address(ip).version == 4:
            frame, proto = arp_announcement(ip, mac), ETH_P_ARP
        else:
            frame, proto = na_announcement(ip, mac), ETH_P_IPV6
        try:
            self.sock.sendto(frame, (bridge, proto))
        except OSError:
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
