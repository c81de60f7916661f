"""Embedded DNS: sandboxes on user-defined networks find each other by name.

As docker's (cnm.md §2.6): a sandbox's resolv.conf says ``nameserver 127.0.0.11``
and ``options ndots:0``; names and ``--alias``es of sandboxes sharing a user-defined
network answer with their addresses (several answers shuffled), TTL 600, nothing
across networks; other names go to the sandbox's upstream servers (``--dns``,
else the host's), asked from the daemon's namespace, 4 s each, the next one on
timeout, SERVFAIL or REFUSED, NXDOMAIN passed on.

Unlike docker there is no DNAT: the daemon opens a UDP and a TCP socket *inside*
each sandbox's namespace bound to 127.0.0.11:53 (127.0.0.0/8 is on lo there), and
serves them all from one selector thread; forwards run in a small thread pool.
The wire format is dnslib's.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import random
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

__all__ = ["DnsService", "SandboxDns"]

log = logging.getLogger("kanal.dns")
ADDRESS = "127.0.0.11"
TTL = 600
SPIN = 0.0005  # seconds of busy polling after each batch of queries


@dataclass
class SandboxDns:
    """What the server knows about one attached sandbox."""

    sandbox_id: str
    upstreams: list[str] = field(default_factory=list)
    internal: bool = False  # only internal networks: no forwarding
    socks: list[socket.socket] = field(default_factory=list)


# (sandbox id, lower-case name) -> [addresses]; None means "not ours, forward"
Lookup = Callable[[str, str], list[str] | None]
#: (sandbox id, address) -> "name.network" of the sandbox holding it, on a shared network
Reverse = Callable[[str, str], str | None]
#: docker's maxConcurrent: forwards beyond it are refused at once
MAX_FORWARDS = 1024


class DnsService:
    def __init__(
        self,
        lookup: Lookup,
        *,
        reverse: Reverse | None = None,
        upstream_port: int = 53,
        forward_timeout: float = 4.0,
        max_forwards: int = MAX_FORWARDS,
    ) -> None:
        self.lookup = lookup
        self.reverse = reverse
        self.max_forwards = max_forwards
        self._inflight = 0
        self.upstream_port = upstream_port
        self.forward_timeout = forward_timeout
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._sandboxes: dict[str, SandboxDns] = {}
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="kanal-dns-fwd")
        self._wake_r, self._wake_w = os.pipe()
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stop = False
        self._thread = threading.Thread(target=self._serve, name="kanal-dns", daemon=True)
        # (sandbox, query without its id) -> (name, addresses, packed answers): a repeated
        # question is answered without parsing it again; the addresses are looked up
        # every time, so a changed name is never served from here.
        self._cache: dict[tuple[str, bytes], tuple[str, list[str], list[bytes]]] = {}
        self._turn = itertools.count()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        os.write(self._wake_w, b"x")
        self._thread.join(5)
        for sid in list(self._sandboxes):
            self.detach(sid)
        self._pool.shutdown(wait=False)

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
        with self._lock:
            self._sandboxes[sandbox_id] = entry
            self._sel.register(udp, selectors.EVENT_READ, ("udp", entry))
            self._sel.register(tcp, selectors.EVENT_READ, ("tcp", entry))
        os.write(self._wake_w, b"x")

    def detach(self, sandbox_id: str) -> None:
        with self._lock:
            entry = self._sandboxes.pop(sandbox_id, None)
            if entry is None:
                return
            for s in entry.socks:
                try:
                    self._sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                s.close()

    def attached(self) -> list[str]:
        with self._lock:
            return list(self._sandboxes)

    # --- serving -------------------------------------------------------------------

    def _serve(self) -> None:
        spin_until = 0.0
        while not self._stop:
            # After a query, poll without sleeping for a moment (as tokio's workers spin
            # before parking): a client's next query is then taken without a wake-up.
            now = time.monotonic()
            events = self._sel.select(timeout=0 if now < spin_until else 1.0)
            if not events:
                continue
            spin_until = time.monotonic() + SPIN
            for key, _ in events:
                if key.data is None:
                    os.read(self._wake_r, 4096)
                    continue
                kind, entry = key.data
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    if kind == "udp":
                        data, peer = sock.recvfrom(4096)
                        self._answer(entry, data, _sender(sock, peer))
                    else:
                        conn, _ = sock.accept()
                        self._pool.submit(self._tcp_client, entry, conn)
                except OSError:
                    continue

    def _tcp_client(self, entry: SandboxDns, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            with conn:
                head = conn.recv(2)
                if len(head) < 2:
                    return
                n = int.from_bytes(head, "big")
                data = b""
                while len(data) < n:
                    chunk = conn.recv(n - len(data))
                    if not chunk:
                        return
                    data += chunk
                reply = self.resolve(entry, data, tcp=True)
                if reply is not None:
                    conn.sendall(len(reply).to_bytes(2, "big") + reply)
        except OSError:
            pass

    def _answer(self, entry: SandboxDns, data: bytes, send: Callable[[bytes], object]) -> None:
        from dnslib import RCODE, DNSRecord

        key = (entry.sandbox_id, data[2:])
        hit = self._cache.get(key)
        if hit is not None:
            name, addrs, variants = hit
            if self.lookup(entry.sandbox_id, name) == addrs:
                send(data[:2] + variants[next(self._turn) % len(variants)][2:])  # round robin
                return
        try:
            q = DNSRecord.parse(data)
        except Exception:  # dnslib raises its own errors on garbage: drop it
            return
        local = self._local(entry, q)
        if local is not None:
            send(local)
            name = str(q.q.qname).rstrip(".").lower()
            addrs_now = self.lookup(entry.sandbox_id, name)
            if addrs_now is not None:
                # Several answers: keep every rotation (up to 8) so each cached
                # reply still varies the order, as a shuffle would.
                variants = [local]
                if len(addrs_now) > 1:
                    rotated = (
                        self._local(entry, q, rotate=k) for k in range(min(8, len(addrs_now)))
                    )
                    variants = [v for v in rotated if v is not None]
                if len(self._cache) > 10000:
                    self._cache.clear()
                self._cache[key] = (name, list(addrs_now), variants)
            return
        # Not ours: forward without blocking the other sandboxes (at most
        # max_forwards at once; beyond, REFUSED at once, as docker's limit does).
        with self._lock:
            busy = self._inflight >= self.max_forwards
            if not busy:
                self._inflight += 1
        if busy:
            r = q.reply()
            r.header.rcode = RCODE.REFUSED
            send(bytes(r.pack()))
            return
        self._pool.submit(lambda: self._forward_and_send(entry, data, send))

    def _forward_and_send(
        self, entry: SandboxDns, data: bytes, send: Callable[[bytes], object]
    ) -> None:
        try:
            reply = self._forward(entry, data)
        finally:
            with self._lock:
                self._inflight -= 1
        if reply is not None:
            try:
                send(reply)
            except OSError:
                pass

    def resolve(self, entry: SandboxDns, data: bytes, *, tcp: bool = False) -> bytes | None:
        """The answer to one query (forwarded synchronously if not ours)."""
        from dnslib import DNSRecord

        try:
            q = DNSRecord.parse(data)
        except Exception:
            return None
        local = self._local(entry, q)
        return local if local is not None else self._forward(entry, data, tcp=tcp)

    def _local(self, entry: SandboxDns, q: object, rotate: int | None = None) -> bytes | None:
        from dnslib import AAAA, PTR, QTYPE, RCODE, RR, A, DNSRecord

        assert isinstance(q, DNSRecord)
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
            if entry.internal:
                r = q.reply()
                r.header.rcode = RCODE.REFUSED
                return bytes(r.pack())
            return None
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

    def _forward(self, entry: SandboxDns, data: bytes, *, tcp: bool = False) -> bytes | None:
        from dnslib import RCODE, DNSRecord

        last: bytes | None = None
        for server in entry.upstreams[:3]:
            try:
                if tcp:
                    with socket.create_connection(
                        (server, self.upstream_port), self.forward_timeout
                    ) as s:
                        s.sendall(len(data).to_bytes(2, "big") + data)
                        n = int.from_bytes(_recv_exact(s, 2), "big")
                        reply = _recv_exact(s, n)
                else:
                    with socket.socket(
                        socket.AF_INET6 if ":" in server else socket.AF_INET, socket.SOCK_DGRAM
                    ) as s:
                        s.settimeout(self.forward_timeout)
                        s.sendto(data, (server, self.upstream_port))
                        reply = s.recv(65535)
            except OSError:
                continue
            try:
                rcode = DNSRecord.parse(reply).header.rcode
            except Exception:
                continue
            last = reply
            if rcode in (RCODE.SERVFAIL, RCODE.REFUSED):
                continue
            return reply
        if last is not None:
            return last
        try:
            q = DNSRecord.parse(data)
        except Exception:
            return None
        r = q.reply()
        r.header.rcode = RCODE.SERVFAIL
        return bytes(r.pack())


def _sender(sock: socket.socket, peer: tuple[str, int]) -> Callable[[bytes], object]:
    def send(reply: bytes) -> object:
        return sock.sendto(reply, peer)

    return send


def _recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise OSError("connection closed")
        out += chunk
    return out


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
