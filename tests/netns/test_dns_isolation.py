"""The embedded DNS server keeps sandboxes apart: one cannot stall another's answers.

The daemon side runs in a "host" namespace made here (the serving thread is started
from inside it, so forwards leave from there), the upstream DNS servers in an
"upstream" namespace joined to it by a veth (198.51.100.0/24): .2 answers (UDP and
TCP), .3 takes queries and never answers, .4 has nothing listening (ICMP port
unreachable). Sandboxes A and B are namespaces of their own. Every wait below is a
generous deadline on an outcome (answered, refused, closed), never a latency.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, A, DNSRecord

from kanal.engine.dns import DnsService
from kanal.netlink.ns import netns_socket, open_netns
from tests.helpers import nsexec
from tests.netns.inns import in_ns

ANSWERS = "198.51.100.2"
SILENT = "198.51.100.3"
CLOSED = "198.51.100.4"
NAMES = {"web": ["10.9.0.5"]}
DEADLINE = 5.0  # seconds a client waits for an answer: more than the 4 s forward timeout


def ns_socket(ns: str, type_: int) -> socket.socket:
    fd = open_netns(f"/run/netns/{ns}")
    try:
        return netns_socket(fd, socket.AF_INET, type_)
    finally:
        os.close(fd)


class Upstream:
    """An authoritative server in the upstream namespace, on UDP and TCP port 53.

    ``ext.test`` has one address, ``big.test`` forty (over 512 bytes: over UDP it is
    truncated to an empty TC answer, as a server with a 512-byte UDP limit does, even
    when the client advertises more); other names are NXDOMAIN.
    """

    def __init__(self, ns: str, addr: str) -> None:
        self.udp = ns_socket(ns, socket.SOCK_DGRAM)
        self.udp.bind((addr, 53))
        self.tcp = ns_socket(ns, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((addr, 53))
        self.tcp.listen(16)
        self.udp_hits = 0
        self.tcp_hits = 0
        threading.Thread(target=self._serve_udp, daemon=True).start()
        threading.Thread(target=self._serve_tcp, daemon=True).start()

    @staticmethod
    def answer(data: bytes) -> DNSRecord:
        q = DNSRecord.parse(data)
        r = q.reply()
        name = str(q.q.qname).rstrip(".")
        if name == "ext.test":
            r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A("192.0.2.99"), ttl=60))
        elif name == "big.test":
            for i in range(40):
                r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A(f"192.0.2.{i + 1}"), ttl=60))
        else:
            r.header.rcode = RCODE.NXDOMAIN
        return r

    def _serve_udp(self) -> None:
        while True:
            try:
                data, peer = self.udp.recvfrom(4096)
            except OSError:
                return
            if not data:  # shut down
                return
            self.udp_hits += 1
            r = self.answer(data)
            out = r.pack()
            if len(out) > 512:
                r.rr = []
                r.header.tc = 1
                out = r.pack()
            self.udp.sendto(out, peer)

    def _serve_tcp(self) -> None:
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            self.tcp_hits += 1
            with conn:
                conn.settimeout(5)
                try:
                    n = int.from_bytes(_recv_exact(conn, 2), "big")
                    out = self.answer(_recv_exact(conn, n)).pack()
                    conn.sendall(len(out).to_bytes(2, "big") + out)
                except OSError:
                    pass

    def close(self) -> None:
        for s in (self.udp, self.tcp):
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the serving thread
            except OSError:
                pass
            s.close()


def _recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise OSError("closed")
        out += chunk
    return out


@dataclass
class World:
    host: str
    upstream_ns: str
    upstream: Upstream
    silent: socket.socket  # what the silent upstream was sent
    make_sandbox: Callable[..., str]
    svc: DnsService


@pytest.fixture
def world(make_netns: Callable[[str], str]) -> Iterator[Callable[..., World]]:
    made: list[tuple[DnsService, Upstream, socket.socket]] = []

    def build(**kwargs: Any) -> World:
        host, up = make_netns("kdh"), make_netns("kdu")
        nsexec(
            host, "ip", "link", "add", "to-up", "type", "veth", "peer", "name", "eth0", "netns", up
        )
        nsexec(host, "ip", "addr", "add", "198.51.100.1/24", "dev", "to-up")
        nsexec(host, "ip", "link", "set", "to-up", "up")
        for a in (ANSWERS, SILENT, CLOSED):
            nsexec(up, "ip", "addr", "add", f"{a}/24", "dev", "eth0")
        nsexec(up, "ip", "link", "set", "eth0", "up")
        upstream = Upstream(up, ANSWERS)
        silent = ns_socket(up, socket.SOCK_DGRAM)  # takes queries, never answers
        silent.bind((SILENT, 53))

        def lookup(sandbox: str, qname: str) -> list[str] | None:
            return NAMES.get(qname)

        svc = DnsService(lookup, **kwargs)
        in_ns(host, svc.start)  # the serving thread (and so every forward) lives in host
        made.append((svc, upstream, silent))

        def make_sandbox(sid: str, upstreams: list[str]) -> str:
            ns = make_netns("kds")
            svc.attach(sid, f"/run/netns/{ns}", upstreams)
            return ns

        return World(host, up, upstream, silent, make_sandbox, svc)

    yield build
    for svc, upstream, silent in made:
        svc.stop()
        upstream.close()
        silent.close()


def ask(ns: str, name: str, *, tcp: bool = False, edns: bool = False) -> DNSRecord:
    """One query from inside ``ns``; raises (socket.timeout) if not answered in time."""

    def go() -> DNSRecord:
        q = DNSRecord.question(name, "A")
        if edns:
            q.add_ar(EDNS0(udp_len=4096))
        return DNSRecord.parse(q.send("127.0.0.11", 53, tcp=tcp, timeout=DEADLINE))

    return in_ns(ns, go)


def closed_by_server(conn: socket.socket, deadline: float = DEADLINE) -> bool:
    """True if the server closes ``conn`` (end of stream or reset) before the deadline."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        r, _, _ = select.select([conn], [], [], max(0.0, end - time.monotonic()))
        if r:
            try:
                return conn.recv(4096) == b""
            except ConnectionResetError:
                return True
    return False


def test_idle_tcp_clients_of_one_sandbox_do_not_stall_another(world: Any) -> None:
    # Issue 11: 40 idle TCP connections from B made A's forwarded and TCP queries
    # time out. The idle timeout is long here, so only the cap closes connections.
    w = world(max_tcp_clients=16, tcp_idle_timeout=600)
    a = w.make_sandbox("a", [ANSWERS])
    b = w.make_sandbox("b", [ANSWERS])
    held = []
    for _ in range(40):
        c = ns_socket(b, socket.SOCK_STREAM)
        c.connect(("127.0.0.11", 53))
        held.append(c)
    try:
        # A is served on every path while B holds its connections.
        assert [str(r.rdata) for r in ask(a, "web").rr] == ["10.9.0.5"]
        assert [str(r.rdata) for r in ask(a, "ext.test").rr] == ["192.0.2.99"]
        assert [str(r.rdata) for r in ask(a, "web", tcp=True).rr] == ["10.9.0.5"]
        assert [str(r.rdata) for r in ask(a, "ext.test", tcp=True).rr] == ["192.0.2.99"]
        assert [str(r.rdata) for r in ask(b, "ext.test").rr] == ["192.0.2.99"]  # B's UDP too
        # B's connections beyond its cap of 16 were accepted and closed at once ...
        assert all(closed_by_server(c) for c in held[16:])
        # ... and the 16 it holds are still served (a query on the first, idle till now).
        q = DNSRecord.question("web", "A").pack()
        held[0].settimeout(DEADLINE)
        held[0].sendall(len(q).to_bytes(2, "big") + q)
        n = int.from_bytes(_recv_exact(held[0], 2), "big")
        assert [str(r.rdata) for r in DNSRecord.parse(_recv_exact(held[0], n)).rr] == ["10.9.0.5"]
        # A query arriving in pieces is answered once whole.
        split = ns_socket(a, socket.SOCK_STREAM)
        held.append(split)
        split.connect(("127.0.0.11", 53))
        split.settimeout(DEADLINE)
        framed = len(q).to_bytes(2, "big") + q
        split.sendall(framed[:1])
        time.sleep(0.05)
        split.sendall(framed[1:])
        n = int.from_bytes(_recv_exact(split, 2), "big")
        assert DNSRecord.parse(_recv_exact(split, n)).rr
        # Detaching B closes its clients.
        w.svc.detach("b")
        assert all(closed_by_server(c) for c in held[:16])
        assert [str(r.rdata) for r in ask(a, "web", tcp=True).rr] == ["10.9.0.5"]
    finally:
        for c in held:
            c.close()


def test_forward_flood_to_a_silent_upstream_does_not_delay_another(world: Any) -> None:
    w = world(max_forwards_per_sandbox=32, forward_timeout=4.0)
    a = w.make_sandbox("a", [ANSWERS])
    b = w.make_sandbox("b", [SILENT])
    flood = ns_socket(b, socket.SOCK_DGRAM)
    try:
        for i in range(200):  # B: 200 forwards to an upstream that never answers
            flood.sendto(DNSRecord.question(f"n{i}.flood.test", "A").pack(), ("127.0.0.11", 53))
        # B gets REFUSED at once beyond its 32 forwards in flight ...
        flood.settimeout(DEADLINE)
        refused = 0
        while refused < 200 - 32:
            r = DNSRecord.parse(flood.recv(4096))
            assert r.header.rcode == RCODE.REFUSED
            refused += 1
        # ... while A's forwards (and local names) answer, UDP and TCP.
        assert [str(r.rdata) for r in ask(a, "ext.test").rr] == ["192.0.2.99"]
        assert [str(r.rdata) for r in ask(a, "ext.test", tcp=True).rr] == ["192.0.2.99"]
        assert ask(a, "missing.test").header.rcode == RCODE.NXDOMAIN
        assert [str(r.rdata) for r in ask(b, "web").rr] == ["10.9.0.5"]
        # B's 32 get SERVFAIL once their (only) upstream timed out.
        flood.settimeout(4.0 + DEADLINE)
        rcodes = [DNSRecord.parse(flood.recv(4096)).header.rcode for _ in range(32)]
        assert rcodes == [RCODE.SERVFAIL] * 32
    finally:
        flood.close()


def test_the_global_cap_is_shared_under_the_sandbox_caps(world: Any) -> None:
    # 40 forwards at once overall, 32 per sandbox: B's flood leaves room for A;
    # then C takes the rest, and A is refused by the global cap.
    w = world(max_forwards=40, max_forwards_per_sandbox=32, forward_timeout=60.0)
    a = w.make_sandbox("a", [ANSWERS])
    socks = []
    w.silent.settimeout(DEADLINE)
    try:
        for sid, count in (("b", 40), ("c", 8)):
            s = ns_socket(w.make_sandbox(sid, [SILENT]), socket.SOCK_DGRAM)
            socks.append(s)
            for i in range(count):
                s.sendto(DNSRecord.question(f"n{i}.test", "A").pack(), ("127.0.0.11", 53))
            if sid == "b":
                for _ in range(32):  # B's 32 forwards reached the silent upstream
                    w.silent.recv(4096)
                s.settimeout(DEADLINE)
                for _ in range(8):  # and its 8 more were refused
                    assert DNSRecord.parse(s.recv(4096)).header.rcode == RCODE.REFUSED
                assert [str(r.rdata) for r in ask(a, "ext.test").rr] == ["192.0.2.99"]
        for _ in range(8):  # C's 8 are on their way: 40 in flight
            w.silent.recv(4096)
        assert ask(a, "other.test").header.rcode == RCODE.REFUSED
        assert [str(r.rdata) for r in ask(a, "web").rr] == ["10.9.0.5"]  # local still
    finally:
        for s in socks:
            s.close()


def test_idle_tcp_clients_are_closed(world: Any) -> None:
    w = world(tcp_idle_timeout=0.5)
    a = w.make_sandbox("a", [ANSWERS])
    silent = ns_socket(a, socket.SOCK_STREAM)  # connects, says nothing
    dribble = ns_socket(a, socket.SOCK_STREAM)  # half a length prefix, then nothing
    served = ns_socket(a, socket.SOCK_STREAM)  # two pipelined queries, then nothing
    try:
        for c in (silent, dribble, served):
            c.connect(("127.0.0.11", 53))
        dribble.sendall(b"\x00")
        q1 = DNSRecord.question("web", "A")
        q2 = DNSRecord.question("ext.test", "A")
        served.sendall(b"".join(len(p).to_bytes(2, "big") + p for p in (q1.pack(), q2.pack())))
        served.settimeout(DEADLINE)
        got = {}
        for _ in range(2):
            n = int.from_bytes(_recv_exact(served, 2), "big")
            r = DNSRecord.parse(_recv_exact(served, n))
            got[r.header.id] = [str(x.rdata) for x in r.rr]
        assert got == {q1.header.id: ["10.9.0.5"], q2.header.id: ["192.0.2.99"]}
        assert closed_by_server(silent)
        assert closed_by_server(dribble)
        assert closed_by_server(served)
        # A client that shuts its side after asking still gets its (forwarded) answer,
        # then the end of the stream.
        half = ns_socket(a, socket.SOCK_STREAM)
        silent.close()
        silent = half
        half.connect(("127.0.0.11", 53))
        half.sendall(len(q2.pack()).to_bytes(2, "big") + q2.pack())
        half.shutdown(socket.SHUT_WR)
        half.settimeout(DEADLINE)
        n = int.from_bytes(_recv_exact(half, 2), "big")
        assert [str(x.rdata) for x in DNSRecord.parse(_recv_exact(half, n)).rr] == ["192.0.2.99"]
        assert closed_by_server(half)
    finally:
        for c in (silent, dribble, served):
            c.close()


def test_next_upstream_at_once_on_port_unreachable(world: Any) -> None:
    # The first upstream has no server: ICMP port unreachable moves on at once, so
    # the answer comes well within the client's deadline despite a 60 s timeout.
    w = world(forward_timeout=60.0)
    a = w.make_sandbox("a", [CLOSED, ANSWERS])
    assert [str(r.rdata) for r in ask(a, "ext.test").rr] == ["192.0.2.99"]


def test_truncated_upstream_answer_is_asked_again_over_tcp(world: Any) -> None:
    w = world()
    a = w.make_sandbox("a", [ANSWERS])
    # The client takes 4096 bytes: the upstream's truncated UDP answer is fetched
    # again over TCP and the whole answer goes back over UDP.
    full = ask(a, "big.test", edns=True)
    assert not full.header.tc and len(full.rr) == 40
    assert w.upstream.udp_hits == 1 and w.upstream.tcp_hits == 1
    # No EDNS: 512 bytes at most, so the client gets the truncated answer (TC) ...
    cut = ask(a, "big.test")
    assert cut.header.tc and not cut.rr
    # ... and over TCP the whole answer.
    assert len(ask(a, "big.test", tcp=True).rr) == 40
