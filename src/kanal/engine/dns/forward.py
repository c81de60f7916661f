"""One query on its way to a sandbox's upstream servers (non-blocking, with deadlines)."""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable
from select import EPOLLIN as IN
from select import EPOLLOUT as OUT
from typing import TYPE_CHECKING, Any

from kanal.engine.dns.wire import REFUSED, SERVFAIL, question_end, rcode, send

if TYPE_CHECKING:
    from kanal.engine.dns.server import DnsService, SandboxDns

__all__ = ["Forward"]


class Forward:
    """One query on its way to the sandbox's upstreams, one at a time, each with its
    own deadline; the answer (or SERVFAIL) goes to ``reply`` once."""

    def __init__(
        self,
        svc: DnsService,
        entry: SandboxDns,
        query: bytes,
        q: Any,
        reply: Callable[[bytes], object],
        udp_size: int,
    ) -> None:
        self.svc, self.entry, self.query, self.q, self.reply = svc, entry, query, q, reply
        self.udp_size = udp_size  # 0: the client is on TCP
        self.qend = question_end(query)
        self.servers = entry.upstreams[:3]
        self.tried = 0
        self.server = ""
        self.sock: socket.socket | None = None
        self.fd = -1
        self.tcp = False
        self.out = b""
        self.inbuf = bytearray()
        self.deadline = 0.0
        self.last: bytes | None = None  # the last SERVFAIL/REFUSED, passed on if all fail
        self.truncated: bytes | None = None  # this upstream's truncated UDP answer
        self.done = False
        self.started = time.monotonic()
        svc.inflight += 1
        entry.forwards.add(self)

    def next_server(self) -> None:
        self._close_sock()
        self.truncated = None
        while self.tried < len(self.servers):
            server = self.servers[self.tried]
            self.tried += 1
            if self._open(server, tcp=self.udp_size == 0):
                return
        self._finish(self.last if self.last is not None else rcode(self.q, SERVFAIL))

    def _open(self, server: str, *, tcp: bool) -> bool:
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        try:
            s = socket.socket(family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        except OSError:
            return False
        try:
            s.setblocking(False)
            if tcp:
                err = s.connect_ex((server, self.svc.upstream_port))
                if err not in (0, errno.EINPROGRESS):
                    raise OSError(err, os.strerror(err))
                self.out = len(self.query).to_bytes(2, "big") + self.query
                self.inbuf = bytearray()
            else:
                # Connected: only that server's answers arrive, and an ICMP "port
                # unreachable" fails the next recv at once instead of waiting 4 s.
                s.connect((server, self.svc.upstream_port))
                s.send(self.query)
        except OSError:
            s.close()
            return False
        self.sock, self.fd, self.tcp, self.server = s, s.fileno(), tcp, server
        self.svc.add(self.fd, self, OUT if tcp else IN)
        self.deadline = time.monotonic() + self.svc.forward_timeout
        self.svc.at(self.deadline, self)
        return True

    def ready(self, mask: int) -> None:
        s = self.sock
        if s is None:
            return
        if not self.tcp:
            while True:
                try:
                    data = s.recv(65535)
                except BlockingIOError:
                    return
                except OSError:  # refused (ICMP) or another error: the next upstream
                    self.next_server()
                    return
                if self._matches(data):
                    self._answer(data)
                    return
                # not the answer to our query: keep waiting for it
        if self.out:
            try:
                n = s.send(self.out)  # EAGAIN while connecting; the error if it failed
            except BlockingIOError:
                return
            except OSError:
                self.next_server()
                return
            self.out = self.out[n:]
            if not self.out:
                self.svc.modify(self.fd, IN)
            return
        try:
            chunk = s.recv(65537)
        except BlockingIOError:
            return
        except OSError:
            self.next_server()
            return
        if not chunk:  # closed before a whole answer
            self.next_server()
            return
        self.inbuf += chunk
        if len(self.inbuf) < 2:
            return
        n = int.from_bytes(self.inbuf[:2], "big")
        if len(self.inbuf) < 2 + n:
            return
        data = bytes(self.inbuf[2 : 2 + n])
        if self._matches(data):
            self._answer(data)
        else:
            self.next_server()

    def _matches(self, data: bytes) -> bool:
        """An answer (QR) to our query: same id, same question (case aside)."""
        q, end = self.query, self.qend
        if len(data) < 12 or data[:2] != q[:2] or not data[2] & 0x80:
            return False
        return end == 0 or (data[4:6] == q[4:6] and data[12:end].lower() == q[12:end].lower())

    def _answer(self, data: bytes) -> None:
        if data[2] & 0x02 and not self.tcp:  # truncated: the same upstream over TCP
            server = self.server
            self._close_sock()
            if self._open(server, tcp=True):
                self.truncated = data
                return
            self._finish(data)  # the client gets TC and can retry over TCP itself
            return
        if data[3] & 0x0F in (SERVFAIL, REFUSED):
            self.last = data
            self.next_server()
            return
        if self.udp_size and len(data) > self.udp_size and self.truncated is not None:
            data = self.truncated  # too big for the client's UDP: it retries over TCP
        self._finish(data)

    def expire(self, deadline: float, now: float) -> None:
        if not self.done and deadline == self.deadline:
            self.next_server()  # this upstream took too long

    def _close_sock(self) -> None:
        if self.sock is not None:
            self.svc.remove(self.fd)
            self.sock.close()
            self.sock = None
            self.deadline = 0.0

    def _release(self) -> None:
        self._close_sock()
        if not self.done:
            self.done = True
            self.svc.inflight -= 1
            self.entry.forwards.discard(self)

    def _finish(self, data: bytes) -> None:
        self._release()
        self.svc.stats.forwarded(data, time.monotonic() - self.started)
        send(self.reply, data)

    def cancel(self) -> None:
        """The sandbox is gone: no answer."""
        self._release()
