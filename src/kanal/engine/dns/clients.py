"""A sandbox's 127.0.0.11:53: its UDP and TCP listeners and its TCP clients.

Each is a handler in the service's epoll loop (``ready(mask)``), never a thread;
a TCP client is a small state machine with an idle deadline.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from select import EPOLLIN as IN
from select import EPOLLOUT as OUT
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kanal.engine.dns.server import DnsService, SandboxDns

__all__ = ["TcpClient", "TcpListener", "UdpListener"]

BATCH = 16  # datagrams or connections taken from one socket before the others' turn
MAX_UNSENT = 256 * 1024  # TCP answer bytes a client leaves unread before it is dropped


class UdpListener:
    """127.0.0.11:53/udp of one sandbox. The hot path: a repeated question for a local
    name is answered here without parsing it."""

    def __init__(self, svc: DnsService, entry: SandboxDns, sock: socket.socket) -> None:
        self.svc, self.entry, self.sock = svc, entry, sock
        self.recvfrom, self.sendto = sock.recvfrom, sock.sendto
        self.cache, self.lookup, self.sid = entry.cache, svc.lookup, entry.sandbox_id

    def ready(self, mask: int) -> None:
        recvfrom, sendto, cache, lookup, sid = (
            self.recvfrom,
            self.sendto,
            self.cache,
            self.lookup,
            self.sid,
        )
        turn, stats = self.svc.turn, self.svc.stats
        for _ in range(BATCH):
            try:
                data, peer = recvfrom(4096)
            except OSError:  # drained (or a stale event)
                return
            stats.queries += 1
            hit = cache.get(data[2:])
            if hit is not None and lookup(sid, hit[0]) == hit[1]:
                stats.cache_hits += 1
                variants = hit[2]
                try:
                    sendto(data[:2] + variants[next(turn) % len(variants)], peer)
                except OSError:
                    pass
            else:
                self.svc.query(self.entry, data, self._to(peer), udp=True)

    def _to(self, peer: tuple[str, int]) -> Callable[[bytes], object]:
        sendto = self.sendto
        return lambda reply: sendto(reply, peer)


class TcpListener:
    """127.0.0.11:53/tcp of one sandbox: accepts up to the sandbox's cap."""

    def __init__(self, svc: DnsService, entry: SandboxDns, sock: socket.socket) -> None:
        self.svc, self.entry, self.sock = svc, entry, sock

    def ready(self, mask: int) -> None:
        for _ in range(BATCH):
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if len(self.entry.tcp_clients) >= self.svc.max_tcp_clients:
                conn.close()  # over the cap: closed at once rather than left waiting
                continue
            TcpClient(self.svc, self.entry, conn)


class TcpClient:
    """One TCP client: length-prefixed queries in (pipelined ones too), answers out,
    closed when idle, on error, when it stops reading, or at the end of its stream
    once the answers it is owed are sent."""

    def __init__(self, svc: DnsService, entry: SandboxDns, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.svc, self.entry, self.sock = svc, entry, sock
        self.fd = sock.fileno()
        self.inbuf = bytearray()
        self.out = bytearray()
        self.pending = 0  # queries not answered yet (forwarded)
        self.eof = False  # the client shut its side: nothing more to read
        self.closed = False
        self.active = time.monotonic()
        self.mask = IN
        entry.tcp_clients.add(self)
        svc.add(self.fd, self, IN)
        svc.at(self.active + svc.tcp_idle_timeout, self)

    def ready(self, mask: int) -> None:
        if self.out:
            self._flush()
        if self.closed or self.eof:
            return
        try:
            # A few KiB at a time: a client's pipelined flood is then answered in
            # turns with the other sockets' events, not in one long stretch.
            chunk = self.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        if not chunk:
            self.eof = True
            self._settle()
            return
        buf = self.inbuf
        buf += chunk
        while len(buf) >= 2:
            n = int.from_bytes(buf[:2], "big")
            if len(buf) < 2 + n:
                break
            data = bytes(buf[2 : 2 + n])
            del buf[: 2 + n]
            self.active = time.monotonic()
            self._query(data)
            if self.closed:
                return

    def _query(self, data: bytes) -> None:
        stats = self.svc.stats
        stats.queries += 1
        cached = self.svc.cached(self.entry, data)
        if cached is not None:
            stats.cache_hits += 1
            self.send(cached)
            return
        self.pending += 1
        if not self.svc.query(self.entry, data, self._answered, udp=False):
            self.pending -= 1  # garbage, dropped

    def _answered(self, reply: bytes) -> None:
        self.pending -= 1
        self.send(reply)
        self._settle()

    def send(self, reply: bytes) -> None:
        if self.closed:
            return
        self.active = time.monotonic()
        was_waiting = bool(self.out)
        self.out += len(reply).to_bytes(2, "big") + reply
        if not was_waiting:
            self._flush()
        elif len(self.out) > MAX_UNSENT:
            self.close()

    def _flush(self) -> None:
        try:
            n = self.sock.send(self.out)
        except BlockingIOError:
            n = 0
        except OSError:
            self.close()
            return
        del self.out[:n]
        self._settle()

    def _settle(self) -> None:
        """Close at the end of the stream once nothing is owed; else wait for what
        is needed (reading, unless at the end; writing while answers are unsent)."""
        if self.closed:
            return
        if self.eof and not self.pending and not self.out:
            self.close()
            return
        mask = (0 if self.eof else IN) | (OUT if self.out else 0)
        if mask != self.mask:
            self.mask = mask
            self.svc.modify(self.fd, mask)

    def expire(self, deadline: float, now: float) -> None:
        if self.closed:
            return
        idle_until = self.active + self.svc.tcp_idle_timeout
        if self.pending:  # waiting for an upstream, not idle
            self.svc.at(now + self.svc.tcp_idle_timeout, self)
        elif now >= idle_until:  # nothing asked, or its answers left unread
            self.close()
        else:
            self.svc.at(idle_until, self)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.svc.remove(self.fd)
        self.sock.close()
        self.entry.tcp_clients.discard(self)
