"""The DHCP client side: one exchange at a time, in the calling thread's namespace.

The daemon calls these from a thread that entered the container's network
namespace, so the socket lives there, bound to the interface (SO_BINDTODEVICE)
on port 68 and asking for broadcast replies (the interface has no address yet).
Renewals go unicast to the server from the leased address (RFC 2131 §4.4.5).
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from kanal.dhcp import packet as P
from kanal.errors import Internal, KanalError, TryAgain

__all__ = ["Lease", "acquire", "release", "renew"]

SO_BINDTODEVICE = 25


@dataclass
class Lease:
    """A lease and where it lives; stored as JSON by the daemon."""

    key: str  # container id / ifname
    netns: str
    ifname: str
    network: str
    client_id: str
    mac: str
    address: str  # CIDR, e.g. 10.0.0.5/24
    server: str
    gateway: str = ""
    routes: list[tuple[str, str]] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    domain: str = ""
    lease_time: int = 0
    t1: int = 0
    t2: int = 0
    obtained: float = 0.0  # time.time() of the last ACK

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Lease:
        d = dict(d)
        d["routes"] = [tuple(r) for r in d.get("routes", [])]
        return cls(**d)

    @property
    def ip(self) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Interface(self.address).ip

    def renew_at(self) -> float:
        return self.obtained + (self.t1 or self.lease_time // 2)

    def rebind_at(self) -> float:
        return self.obtained + (self.t2 or self.lease_time * 7 // 8)

    def expires_at(self) -> float:
        return self.obtained + self.lease_time


def _socket(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
    s.bind(("0.0.0.0", 68))
    return s


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def _base_options(msg_type: int, client_id: str, hostname: str) -> dict[int, bytes]:
    opts = {
        P.OPT_MSG_TYPE: bytes((msg_type,)),
        P.OPT_CLIENT_ID: b"\0" + client_id.encode(),  # type 0: an opaque id (RFC 2132 9.14)
        P.OPT_PARAMS: bytes(
            (P.OPT_SUBNET_MASK, P.OPT_ROUTER, P.OPT_DNS, P.OPT_DOMAIN, P.OPT_CLASSLESS_ROUTES)
        ),
    }
    if hostname:
        opts[P.OPT_HOSTNAME] = hostname.encode()[:63]
    return opts


def _exchange(
    s: socket.socket,
    msg: P.Message,
    dest: str,
    want: set[int],
    timeout: float,
) -> P.Message:
    """Send ``msg`` (again with back-off) until a reply of a ``want`` type arrives."""
    deadline = time.monotonic() + timeout
    wait = 1.0
    while True:
        s.sendto(msg.encode(), (dest, 67))
        until = min(time.monotonic() + wait, deadline)
        while True:
            left = until - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([s], [], [], left)
            if not ready:
                break
            data = s.recv(4096)
            try:
                reply = P.Message.decode(data)
            except KanalError:
                continue
            if reply.op == 2 and reply.xid == msg.xid and reply.msg_type in want:
                return reply
        if time.monotonic() >= deadline:
            raise TryAgain(f"no DHCP answer within {timeout:.0f} s")
        wait = min(wait * 2, 8.0)


def _fill(lease: Lease, ack: P.Message) -> None:
    mask = ack.addr_option(P.OPT_SUBNET_MASK) or ipaddress.IPv4Address("255.255.255.0")
    prefix = ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
    lease.address = f"{ack.yiaddr}/{prefix}"
    routers = ack.addr_list(P.OPT_ROUTER)
    lease.gateway = str(routers[0]) if routers else ""
    lease.routes = []
    raw = ack.options.get(P.OPT_CLASSLESS_ROUTES)
    if raw:
        # RFC 3442: with option 121 the client ignores option 3's routers for routes.
        lease.routes = [(str(n), str(g)) for n, g in P.decode_classless_routes(raw)]
    lease.dns = [str(a) for a in ack.addr_list(P.OPT_DNS)]
    lease.domain = ack.options.get(P.OPT_DOMAIN, b"").decode(errors="replace")
    lease.lease_time = ack.u32_option(P.OPT_LEASE_TIME) or 3600
    lease.t1 = ack.u32_option(P.OPT_T1) or 0
    lease.t2 = ack.u32_option(P.OPT_T2) or 0
    lease.obtained = time.time()
    server = ack.addr_option(P.OPT_SERVER_ID)
    if server is not None:
        lease.server = str(server)


def acquire(lease: Lease, *, hostname: str = "", timeout: float = 10.0) -> Lease:
    """DISCOVER → OFFER → REQUEST → ACK on ``lease.ifname``; fills ``lease``.

    Raises:
        TryAgain: no server answered in time. Internal: the server said NAK.
    """
    xid = struct.unpack("!I", os.urandom(4))[0]
    chaddr = _mac_bytes(lease.mac)
    with _socket(lease.ifname) as s:
        disc = P.Message(1, xid, chaddr, flags=0x8000)
        disc.options = _base_options(P.DISCOVER, lease.client_id, hostname)
        offer = _exchange(s, disc, "255.255.255.255", {P.OFFER}, timeout)
        server = offer.addr_option(P.OPT_SERVER_ID)
        req = P.Message(1, xid, chaddr, flags=0x8000)
        req.options = _base_options(P.REQUEST, lease.client_id, hostname)
        req.options[P.OPT_REQUESTED_IP] = offer.yiaddr.packed
        if server is not None:
            req.options[P.OPT_SERVER_ID] = server.packed
        ack = _exchange(s, req, "255.255.255.255", {P.ACK, P.NAK}, timeout)
    if ack.msg_type == P.NAK:
        raise Internal("the DHCP server refused the offered address (NAK)")
    lease.server = str(server or ack.siaddr)
    _fill(lease, ack)
    return lease


def renew(lease: Lease, *, rebind: bool = False, timeout: float = 10.0) -> Lease:
    """REQUEST with ciaddr: unicast to the server (renew), or broadcast (rebind)."""
    xid = struct.unpack("!I", os.urandom(4))[0]
    with _socket(lease.ifname) as s:
        req = P.Message(1, xid, _mac_bytes(lease.mac), ciaddr=lease.ip)
        req.options = _base_options(P.REQUEST, lease.client_id, "")
        dest = "255.255.255.255" if rebind else lease.server
        ack = _exchange(s, req, dest, {P.ACK, P.NAK}, timeout)
    if ack.msg_type == P.NAK:
        raise Internal(f"the DHCP server took back {lease.ip} (NAK)")
    _fill(lease, ack)
    return lease


def release(lease: Lease) -> None:
    """RELEASE to the server; no answer comes (best-effort, as RFC 2131 says)."""
    with _socket(lease.ifname) as s:
        msg = P.Message(
            1, struct.unpack("!I", os.urandom(4))[0], _mac_bytes(lease.mac), ciaddr=lease.ip
        )
        msg.options = {
            P.OPT_MSG_TYPE: bytes((P.RELEASE,)),
            P.OPT_CLIENT_ID: b"\0" + lease.client_id.encode(),
            P.OPT_SERVER_ID: ipaddress.IPv4Address(lease.server).packed,
        }
        s.sendto(msg.encode(), (lease.server, 67))
