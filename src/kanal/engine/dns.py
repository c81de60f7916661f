"""Embedded DNS: sandboxes on user-defined networks find each other by name.

As docker's (cnm.md §2.6): a sandbox's resolv.conf says ``nameserver 127.0.0.11``
and ``options ndots:0``; names and ``--alias``es of sandboxes sharing a user-defined
network answer with their addresses (several answers shuffled), TTL 600, nothing
across networks; other names go to the sandbox's upstream servers (``--dns``,
else the host's; the first three), asked from the daemon's namespace, 4 s each,
the next one on timeout, SERVFAIL or REFUSED (or an ICMP "port unreachable"),
NXDOMAIN passed on. An upstream's truncated UDP answer is asked again from the
same upstream over TCP; a UDP client gets the full answer if it fits the size it
advertised (512 bytes without EDNS), else the truncated one, so that it retries
over TCP. Internal-only sandboxes get REFUSED instead of a forward.

Unlike docker there is no DNAT: the daemon opens a UDP and a TCP socket *inside*
each sandbox's namespace bound to 127.0.0.11:53 (127.0.0.0/8 is on lo there).
The wire format is dnslib's.

One sandbox cannot slow another. Everything is served by one thread from one
epoll set, and nothing in it blocks: UDP and TCP listeners, TCP clients (a small
state machine each, never a thread) and forwards (one non-blocking UDP or TCP
socket per forward, with a deadline). What a sandbox may hold is capped:

* at most ``max_tcp_clients`` (16) open TCP clients; a connection beyond that is
  accepted and closed at once, so the client sees the end of the stream at once
  instead of waiting in the listen backlog, and tries again or elsewhere;
* a TCP client that has not sent a complete query for ``tcp_idle_timeout`` (5 s)
  since it connected or got its last answer is closed (one dribbling a byte at a
  time is idle too);
* at most ``max_forwards_per_sandbox`` (128) forwards in flight, under the
  global ``max_forwards`` (1024, docker's maxConcurrent). Beyond either, the
  query is answered REFUSED at once, as docker answers at its limit. REFUSED and
  not SERVFAIL: it says "this server will not do that for you now", a policy
  answer a stub resolver takes as "ask the next nameserver"; SERVFAIL would
  claim the name's own servers failed, which caching stubs may remember as such
  (RFC 2308 §7.1).

Repeated questions for local names are answered from replies packed once, with
the query's id patched in (the addresses are looked up on every query, so a
changed name is never answered from there). After each batch of events the loop
polls without sleeping for ``SPIN`` seconds before it blocks again, as tokio's
workers spin before parking: a client's next query is then taken without a
wake-up. Only while the CPU is free, though: when the thread finds it was taken
off the CPU in the middle of spinning, it stops spinning for ``CALM`` seconds (a
spinning thread on a busy machine burns its share and then waits in the run
queue when the query comes; a sleeping one is woken and run at once).
"""

from __future__ import annotations

import errno
import heapq
import ipaddress
import itertools
import logging
import os
import random
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["DnsService", "SandboxDns"]

log = logging.getLogger("kanal.dns")
ADDRESS = "127.0.0.11"
TTL = 600
SPIN = 0.0002  # seconds of busy polling after each batch of events, when the CPU is free
PREEMPTED = 0.00003  # an empty poll longer than this while spinning: the CPU is contended
CALM = 0.1  # seconds without spinning after that
#: docker's maxConcurrent: forwards beyond it (all sandboxes together) are refused at once
MAX_FORWARDS = 1024
#: forwards one sandbox may have in flight: eight sandboxes at their cap fill the global one
MAX_SANDBOX_FORWARDS = 128
#: open TCP clients per sandbox
MAX_TCP_CLIENTS = 16
#: seconds a TCP client may stay without a complete query
TCP_IDLE_TIMEOUT = 5.0
_BATCH = 16  # datagrams or connections taken from one socket before the others' turn
_MAX_UNSENT = 256 * 1024  # TCP answer bytes a client leaves unread before it is dropped
_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_SERVFAIL, _REFUSED = 2, 5


class _Handler(Protocol):
    def ready(self, mask: int) -> None: ...


class _Timed(Protocol):
    def expire(self, deadline: float, now: float) -> None: ...


# (name, addresses it had, rotations of the packed answer without its 2-byte id)
_Cached = tuple[str, list[str], list[bytes]]


@dataclass(eq=False)
class SandboxDns:
    """What the server knows about one attached sandbox, and what it holds now."""

    sandbox_id: str
    upstreams: list[str] = field(default_factory=list)
    internal: bool = False  # only internal networks: no forwarding
    socks: list[socket.socket] = field(default_factory=list)
    tcp_clients: set[_TcpClient] = field(default_factory=set)
    forwards: set[_Forward] = field(default_factory=set)
    cache: dict[bytes, _Cached] = field(default_factory=dict)  # query without its id


# (sandbox id, lower-case name) -> [addresses]; None means "not ours, forward"
Lookup = Callable[[str, str], list[str] | None]
#: (sandbox id, address) -> "name.network" of the sandbox holding it, on a shared network
Reverse = Callable[[str, str], str | None]


class DnsService:
    """The embedded DNS server of every attached sandbox (see the module docstring).

    ``lookup``/``reverse`` answer names and addresses and are called from the serving
    thread, so they must be quick; ``attach``/``detach`` may be called from any thread
    (the serving thread carries them out and they return when done). The limits and
    timeouts are attributes, read when they apply.
    """

    def __init__(
        self,
        lookup: Lookup,
        *,
        reverse: Reverse | None = None,
        upstream_port: int = 53,
        forward_timeout: float = 4.0,
        max_forwards: int = MAX_FORWARDS,
        max_forwards_per_sandbox: int = MAX_SANDBOX_FORWARDS,
        max_tcp_clients: int = MAX_TCP_CLIENTS,
        tcp_idle_timeout: float = TCP_IDLE_TIMEOUT,
    ) -> None:
        self.lookup = lookup
        self.reverse = reverse
        self.upstream_port = upstream_port
        self.forward_timeout = forward_timeout
        self.max_forwards = max_forwards
        self.max_forwards_per_sandbox = max_forwards_per_sandbox
        self.max_tcp_clients = max_tcp_clients
        self.tcp_idle_timeout = tcp_idle_timeout
        self._inflight = 0  # forwards in flight, all sandboxes
        # Owned by the serving thread once it runs: other threads hand it work in _ops.
        self._ep = select.epoll()
        self._handlers: dict[int, _Handler] = {}
        self._timers: list[tuple[float, int, _Timed]] = []
        self._seq = itertools.count()
        self._turn = itertools.count()
        self._ops: deque[Callable[[], None]] = deque()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._ep.register(self._wake_r, _IN)
        self._handlers[self._wake_r] = _Wake(self)
        self._lock = threading.Lock()  # guards _sandboxes, read from other threads
        self._sandboxes: dict[str, SandboxDns] = {}
        self._stop = False
        self._closed = False  # the epoll set and the wake pipe, after stop()
        self._thread = threading.Thread(target=self._serve, name="kanal-dns", daemon=True)

    def start(self) -> None:
        """Serve from a thread started here, in the caller's network namespace (where
        forwards are sent from)."""
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(5)
        for sid in self.attached():
            self.detach(sid)
        if not self._thread.is_alive() and not self._closed:  # stopped for good
            self._closed = True
            self._ep.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    # --- sandboxes -----------------------------------------------------------------

    def attach(
        self, sandbox_id: str, netns: str, upstreams: Sequence[str], *, internal: bool = False
    ) -> None:
        """Serve 127.0.0.11:53 (UDP and TCP) inside ``netns``; idempotent."""
        from kanal.netlink.ns import netns_socket, open_netns

        self.detach(sandbox_id)
        fd = open_netns(netns)
        try:
            udp = netns_socket(fd, socket.AF_INET, socket.SOCK_DGRAM)
            tcp = netns_socket(fd, socket.AF_INET, socket.SOCK_STREAM)
        finally:
            os.close(fd)
        try:
            udp.bind((ADDRESS, 53))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((ADDRESS, 53))
            tcp.listen(64)
        except OSError:
            udp.close()
            tcp.close()
            raise
        udp.setblocking(False)
        tcp.setblocking(False)
        entry = SandboxDns(sandbox_id, list(upstreams), internal, [udp, tcp])

        def add() -> None:
            self._drop(sandbox_id)
            with self._lock:
                self._sandboxes[sandbox_id] = entry
            try:
                self._add(udp.fileno(), _UdpListener(self, entry, udp), _IN)
                self._add(tcp.fileno(), _TcpListener(self, entry, tcp), _IN)
            except (OSError, ValueError):
                self._drop(sandbox_id)  # closes both
                raise

        self._call(add)

    def detach(self, sandbox_id: str) -> None:
        """Stop serving ``sandbox_id``: its sockets, TCP clients and forwards are closed
        when this returns."""
        self._call(lambda: self._drop(sandbox_id))

    def attached(self) -> list[str]:
        with self._lock:
            return list(self._sandboxes)

    def _drop(self, sandbox_id: str) -> None:
        with self._lock:
            entry = self._sandboxes.pop(sandbox_id, None)
        if entry is None:
            return
        for s in entry.socks:
            self._remove(s.fileno())
            s.close()
        for c in list(entry.tcp_clients):
            c.close()
        for f in list(entry.forwards):
            f.cancel()

    # --- the serving thread ----------------------------------------------------------

    def _call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the serving thread (or here if it does not run) and wait."""
        if not self._thread.is_alive() or threading.current_thread() is self._thread:
            fn()
            return
        done = threading.Event()
        failed: list[BaseException] = []

        def op() -> None:
            try:
                fn()
            except BaseException as e:  # re-raised in the caller
                failed.append(e)
            finally:
                done.set()

        self._ops.append(op)
        self._wake()
        while not done.wait(0.5):
            if not self._thread.is_alive():
                self._run_ops()  # the loop ended before taking it
        if failed:
            raise failed[0]

    def _run_ops(self) -> None:
        while True:
            try:
                op = self._ops.popleft()
            except IndexError:
                return
            op()

    def _wake(self) -> None:
        if self._closed:  # its number may belong to another file by now
            return
        try:
            os.write(self._wake_w, b"x")
        except OSError:  # full: the loop is being woken anyway
            pass

    def _add(self, fd: int, handler: _Handler, mask: int) -> None:
        self._handlers[fd] = handler
        self._ep.register(fd, mask)

    def _modify(self, fd: int, mask: int) -> None:
        try:
            self._ep.modify(fd, mask)
        except (OSError, ValueError):
            pass

    def _remove(self, fd: int) -> None:
        """Forget ``fd`` (its owner closes it). An event for it already taken from epoll
        may still reach the handler of a new socket given the same number: handlers
        therefore treat events as hints and just try their non-blocking calls."""
        self._handlers.pop(fd, None)
        try:
            self._ep.unregister(fd)
        except (OSError, ValueError):
            pass

    def _at(self, deadline: float, obj: _Timed) -> None:
        heapq.heappush(self._timers, (deadline, next(self._seq), obj))

    def _serve(self) -> None:
        poll = self._ep.poll
        handlers = self._handlers
        timers = self._timers
        mono = time.monotonic
        spin_until = 0.0
        calm_until = 0.0  # no spinning before this: the CPU was contended
        while not self._stop:
            now = mono()
            if now < spin_until:
                timeout = 0.0
            elif timers:
                timeout = min(1.0, max(0.0, timers[0][0] - now))
            else:
                timeout = 1.0
            events = poll(timeout)
            if events:
                for fd, mask in events:
                    h = handlers.get(fd)
                    if h is not None:
                        try:
                            h.ready(mask)
                        except Exception:  # a bug for one client must not stop the others
                            log.exception("embedded DNS: error serving fd %d", fd)
                now = mono()
                if now >= calm_until:
                    spin_until = now + SPIN
            else:
                before, now = now, mono()
                if timeout == 0.0 and now - before > PREEMPTED:
                    # An empty poll took long: the thread was taken off the CPU while
                    # spinning, so others want it. Spinning would now only delay them
                    # and leave this thread queued behind them when a query comes;
                    # blocking lets the scheduler wake it at once instead.
                    spin_until, calm_until = 0.0, now + CALM
            while timers and timers[0][0] <= now:
                deadline, _, obj = heapq.heappop(timers)
                try:
                    obj.expire(deadline, now)
                except Exception:
                    log.exception("embedded DNS: error at a deadline")
        self._run_ops()

    # --- answering -------------------------------------------------------------------

    def _cached(self, entry: SandboxDns, data: bytes) -> bytes | None:
        hit = entry.cache.get(data[2:])
        if hit is None or self.lookup(entry.sandbox_id, hit[0]) != hit[1]:
            return None
        variants = hit[2]
        return data[:2] + variants[next(self._turn) % len(variants)]  # round robin

    def _query(
        self, entry: SandboxDns, data: bytes, reply: Callable[[bytes], object], *, udp: bool
    ) -> bool:
        """Answer ``data`` (not in the cache): a local answer is sent at once, else a
        forward starts. ``reply`` is called exactly once (maybe later), unless the query
        is garbage and dropped: then False."""
        from dnslib import DNSRecord

        try:
            q = DNSRecord.parse(data)
        except Exception:  # dnslib raises its own errors on garbage: drop it
            return False
        local = self._local(entry, q)
        if local is not None:
            _send(reply, local)
            self._remember(entry, data, q, local)
        elif not entry.upstreams:
            _send(reply, _rcode(q, _SERVFAIL))
        elif (
            self._inflight >= self.max_forwards
            or len(entry.forwards) >= self.max_forwards_per_sandbox
        ):
            _send(reply, _rcode(q, _REFUSED))
        else:
            _Forward(self, entry, data, q, reply, _udp_size(q) if udp else 0).next_server()
        return True

    def _remember(self, entry: SandboxDns, data: bytes, q: Any, local: bytes) -> None:
        name = str(q.q.qname).rstrip(".").lower()
        addrs = self.lookup(entry.sandbox_id, name)
        if addrs is None:
            return
        # Several answers: keep every rotation (up to 8) so each cached reply still
        # varies the order, as a shuffle would.
        variants = [local]
        if len(addrs) > 1:
            rotated = (self._local(entry, q, rotate=k) for k in range(min(8, len(addrs))))
            variants = [v for v in rotated if v is not None]
        if len(entry.cache) >= 1024:
            entry.cache.clear()
        entry.cache[data[2:]] = (name, list(addrs), [v[2:] for v in variants])

    def _local(self, entry: SandboxDns, q: Any, rotate: int | None = None) -> bytes | None:
        from dnslib import AAAA, PTR, QTYPE, RR, A

        if not q.questions:
            return None
        qn = str(q.q.qname).rstrip(".").lower()
        if q.q.qtype == QTYPE.PTR and self.reverse is not None:
            ip = _reverse_pointer_ip(qn)
            name = self.reverse(entry.sandbox_id, ip) if ip else None
            if name is not None:
                r = q.reply()
                r.add_answer(RR(q.q.qname, QTYPE.PTR, rdata=PTR(name + "."), ttl=TTL))
                return bytes(r.pack())
        addrs = self.lookup(entry.sandbox_id, qn)
        if addrs is None:
            return _rcode(q, _REFUSED) if entry.internal else None
        r = q.reply()
        qtype = q.q.qtype
        picked = list(addrs)
        if rotate is None:
            random.shuffle(picked)  # varied order, as docker's
        else:
            picked = picked[rotate:] + picked[:rotate]
        for a in picked:
            if ":" in a and qtype in (QTYPE.AAAA, QTYPE.ANY):
                r.add_answer(RR(q.q.qname, QTYPE.AAAA, rdata=AAAA(a), ttl=TTL))
            elif ":" not in a and qtype in (QTYPE.A, QTYPE.ANY):
                r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A(a), ttl=TTL))
        return bytes(r.pack())  # a known name asked another type: empty NOERROR


class _Wake:
    """The pipe other threads write to: runs the work they handed over."""

    def __init__(self, svc: DnsService) -> None:
        self.svc = svc

    def ready(self, mask: int) -> None:
        try:
            os.read(self.svc._wake_r, 4096)
        except OSError:
            pass
        self.svc._run_ops()


class _UdpListener:
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
        turn = self.svc._turn
        for _ in range(_BATCH):
            try:
                data, peer = recvfrom(4096)
            except OSError:  # drained (or a stale event)
                return
            hit = cache.get(data[2:])
            if hit is not None and lookup(sid, hit[0]) == hit[1]:
                variants = hit[2]
                try:
                    sendto(data[:2] + variants[next(turn) % len(variants)], peer)
                except OSError:
                    pass
            else:
                self.svc._query(self.entry, data, self._to(peer), udp=True)

    def _to(self, peer: tuple[str, int]) -> Callable[[bytes], object]:
        sendto = self.sendto
        return lambda reply: sendto(reply, peer)


class _TcpListener:
    """127.0.0.11:53/tcp of one sandbox: accepts up to the sandbox's cap."""

    def __init__(self, svc: DnsService, entry: SandboxDns, sock: socket.socket) -> None:
        self.svc, self.entry, self.sock = svc, entry, sock

    def ready(self, mask: int) -> None:
        for _ in range(_BATCH):
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if len(self.entry.tcp_clients) >= self.svc.max_tcp_clients:
                conn.close()  # over the cap: closed at once rather than left waiting
                continue
            _TcpClient(self.svc, self.entry, conn)


class _TcpClient:
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
        self.mask = _IN
        entry.tcp_clients.add(self)
        svc._add(self.fd, self, _IN)
        svc._at(self.active + svc.tcp_idle_timeout, self)

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
        cached = self.svc._cached(self.entry, data)
        if cached is not None:
            self.send(cached)
            return
        self.pending += 1
        if not self.svc._query(self.entry, data, self._answered, udp=False):
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
        elif len(self.out) > _MAX_UNSENT:
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
        mask = (0 if self.eof else _IN) | (_OUT if self.out else 0)
        if mask != self.mask:
            self.mask = mask
            self.svc._modify(self.fd, mask)

    def expire(self, deadline: float, now: float) -> None:
        if self.closed:
            return
        idle_until = self.active + self.svc.tcp_idle_timeout
        if self.pending:  # waiting for an upstream, not idle
            self.svc._at(now + self.svc.tcp_idle_timeout, self)
        elif now >= idle_until:  # nothing asked, or its answers left unread
            self.close()
        else:
            self.svc._at(idle_until, self)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.svc._remove(self.fd)
        self.sock.close()
        self.entry.tcp_clients.discard(self)


class _Forward:
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
        self.qend = _question_end(query)
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
        svc._inflight += 1
        entry.forwards.add(self)

    def next_server(self) -> None:
        self._close_sock()
        self.truncated = None
        while self.tried < len(self.servers):
            server = self.servers[self.tried]
            self.tried += 1
            if self._open(server, tcp=self.udp_size == 0):
                return
        self._finish(self.last if self.last is not None else _rcode(self.q, _SERVFAIL))

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
        self.svc._add(self.fd, self, _OUT if tcp else _IN)
        self.deadline = time.monotonic() + self.svc.forward_timeout
        self.svc._at(self.deadline, self)
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
                self.svc._modify(self.fd, _IN)
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
        if data[3] & 0x0F in (_SERVFAIL, _REFUSED):
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
            self.svc._remove(self.fd)
            self.sock.close()
            self.sock = None
            self.deadline = 0.0

    def _release(self) -> None:
        self._close_sock()
        if not self.done:
            self.done = True
            self.svc._inflight -= 1
            self.entry.forwards.discard(self)

    def _finish(self, data: bytes) -> None:
        self._release()
        _send(self.reply, data)

    def cancel(self) -> None:
        """The sandbox is gone: no answer."""
        self._release()


def _send(reply: Callable[[bytes], object], data: bytes) -> None:
    try:
        reply(data)
    except OSError:  # the client went away
        pass


def _rcode(q: Any, rcode: int) -> bytes:
    r = q.reply()
    r.header.rcode = rcode
    return bytes(r.pack())


def _udp_size(q: Any) -> int:
    """The UDP answer size a client takes: its EDNS0 OPT record's, at least 512."""
    for rr in q.ar:
        if rr.rtype == 41:  # OPT: the class field carries the size
            return max(512, int(rr.rclass))
    return 512


def _question_end(data: bytes) -> int:
    """Where the (single) question of a query ends; 0 if it is not a plain one."""
    if len(data) < 12 or data[4:6] != b"\x00\x01":
        return 0
    i = 12
    while i < len(data):
        n = data[i]
        if n == 0:
            end = i + 5  # the root label, then type and class
            return end if end <= len(data) else 0
        if n & 0xC0:  # a compression pointer in a query: do not guess
            return 0
        i += n + 1
    return 0


def _reverse_pointer_ip(qname: str) -> str:
    """``4.3.2.1.in-addr.arpa`` -> ``1.2.3.4`` (and ip6.arpa nibbles); '' if not one."""
    if qname.endswith(".in-addr.arpa"):
        parts = qname[: -len(".in-addr.arpa")].split(".")
        text = ".".join(reversed(parts))
    elif qname.endswith(".ip6.arpa"):
        nibbles = qname[: -len(".ip6.arpa")].split(".")
        if len(nibbles) != 32:
            return ""
        h = "".join(reversed(nibbles))
        text = ":".join(h[i : i + 4] for i in range(0, 32, 4))
    else:
        return ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""
