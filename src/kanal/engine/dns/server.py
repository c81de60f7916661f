"""The embedded DNS service: attach/detach, the epoll loop, and the answers.

One thread serves every attached sandbox from one epoll set; other threads hand
it work (attach, detach) through a queue and a wake-up pipe. See the package
docstring for what is answered how, and the limits.
"""

from __future__ import annotations

import heapq
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
from typing import TYPE_CHECKING, Any, Protocol

from dnslib import AAAA, PTR, QTYPE, RR, A, DNSRecord

from kanal.engine.dns.clients import TcpListener, UdpListener
from kanal.engine.dns.forward import Forward
from kanal.engine.dns.stats import DnsStats
from kanal.engine.dns.wire import REFUSED, SERVFAIL, rcode, reverse_pointer_ip, send, udp_size
from kanal.netlink.ns import netns_socket, open_netns

if TYPE_CHECKING:
    from kanal.engine.dns.clients import TcpClient

__all__ = ["DnsService", "Handler", "Lookup", "Reverse", "SandboxDns", "Timed"]

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
IN = select.EPOLLIN


class Handler(Protocol):
    def ready(self, mask: int) -> None: ...


class Timed(Protocol):
    def expire(self, deadline: float, now: float) -> None: ...


# (name, addresses it had, rotations of the packed answer without its 2-byte id)
Cached = tuple[str, list[str], list[bytes]]


@dataclass(eq=False)
class SandboxDns:
    """What the server knows about one attached sandbox, and what it holds now."""

    sandbox_id: str
    upstreams: list[str] = field(default_factory=list)
    internal: bool = False  # only internal networks: no forwarding
    socks: list[socket.socket] = field(default_factory=list)
    tcp_clients: set[TcpClient] = field(default_factory=set)
    forwards: set[Forward] = field(default_factory=set)
    cache: dict[bytes, Cached] = field(default_factory=dict)  # query without its id


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
        self.inflight = 0  # forwards in flight, all sandboxes
        self.stats = DnsStats()  # bumped by the serving thread only
        # Owned by the serving thread once it runs: other threads hand it work in _ops.
        self._ep = select.epoll()
        self._handlers: dict[int, Handler] = {}
        self._timers: list[tuple[float, int, Timed]] = []
        self._seq = itertools.count()
        self.turn = itertools.count()
        self._ops: deque[Callable[[], None]] = deque()
        self.wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._ep.register(self.wake_r, IN)
        self._handlers[self.wake_r] = Wake(self)
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
            os.close(self.wake_r)
            os.close(self._wake_w)

    # --- sandboxes -----------------------------------------------------------------

    def attach(
        self, sandbox_id: str, netns: str, upstreams: Sequence[str], *, internal: bool = False
    ) -> None:
        """Serve 127.0.0.11:53 (UDP and TCP) inside ``netns``; idempotent."""
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
                self.add(udp.fileno(), UdpListener(self, entry, udp), IN)
                self.add(tcp.fileno(), TcpListener(self, entry, tcp), IN)
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
            self.remove(s.fileno())
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
                self.run_ops()  # the loop ended before taking it
        if failed:
            raise failed[0]

    def run_ops(self) -> None:
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

    def add(self, fd: int, handler: Handler, mask: int) -> None:
        self._handlers[fd] = handler
        self._ep.register(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        try:
            self._ep.modify(fd, mask)
        except (OSError, ValueError):
            pass

    def remove(self, fd: int) -> None:
        """Forget ``fd`` (its owner closes it). An event for it already taken from epoll
        may still reach the handler of a new socket given the same number: handlers
        therefore treat events as hints and just try their non-blocking calls."""
        self._handlers.pop(fd, None)
        try:
            self._ep.unregister(fd)
        except (OSError, ValueError):
            pass

    def at(self, deadline: float, obj: Timed) -> None:
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
        self.run_ops()

    # --- answering -------------------------------------------------------------------

    def cached(self, entry: SandboxDns, data: bytes) -> bytes | None:
        hit = entry.cache.get(data[2:])
        if hit is None or self.lookup(entry.sandbox_id, hit[0]) != hit[1]:
            return None
        variants = hit[2]
        return data[:2] + variants[next(self.turn) % len(variants)]  # round robin

    def query(
        self, entry: SandboxDns, data: bytes, reply: Callable[[bytes], object], *, udp: bool
    ) -> bool:
        """Answer ``data`` (not in the cache): a local answer is sent at once, else a
        forward starts. ``reply`` is called exactly once (maybe later), unless the query
        is garbage and dropped: then False."""
        stats = self.stats
        try:
            q = DNSRecord.parse(data)
        except Exception:  # dnslib raises its own errors on garbage: drop it
            stats.dropped += 1
            return False
        local = self._local(entry, q)
        if local is not None:
            stats.answer("local", local)
            send(reply, local)
            self._remember(entry, data, q, local)
        elif not entry.upstreams:
            stats.count("local", SERVFAIL)
            send(reply, rcode(q, SERVFAIL))
        elif (
            self.inflight >= self.max_forwards
            or len(entry.forwards) >= self.max_forwards_per_sandbox
        ):
            stats.refused += 1
            stats.count("local", REFUSED)
            send(reply, rcode(q, REFUSED))
        else:
            Forward(self, entry, data, q, reply, udp_size(q) if udp else 0).next_server()
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
        if not q.questions:
            return None
        qn = str(q.q.qname).rstrip(".").lower()
        if q.q.qtype == QTYPE.PTR and self.reverse is not None:
            ip = reverse_pointer_ip(qn)
            name = self.reverse(entry.sandbox_id, ip) if ip else None
            if name is not None:
                r = q.reply()
                r.add_answer(RR(q.q.qname, QTYPE.PTR, rdata=PTR(name + "."), ttl=TTL))
                return bytes(r.pack())
        addrs = self.lookup(entry.sandbox_id, qn)
        if addrs is None:
            return rcode(q, REFUSED) if entry.internal else None
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


class Wake:
    """The pipe other threads write to: runs the work they handed over."""

    def __init__(self, svc: DnsService) -> None:
        self.svc = svc

    def ready(self, mask: int) -> None:
        try:
            os.read(self.svc.wake_r, 4096)
        except OSError:
            pass
        self.svc.run_ops()
