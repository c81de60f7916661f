"""The embedded DNS server: local names, forwarding, next upstream on failure, TCP."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from kanal.engine.dns import DnsService
from tests.netns.inns import in_ns


class Upstream:
    """A tiny authoritative server on loopback: answers ``ext.test`` or refuses."""

    def __init__(self, refuse: bool = False, addr: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, port))
        self.port = self.sock.getsockname()[1]
        self.refuse = refuse
        self.hits = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            self.hits += 1
            q = DNSRecord.parse(data)
            r = q.reply()
            if self.refuse:
                r.header.rcode = RCODE.REFUSED
            elif str(q.q.qname).rstrip(".") == "ext.test":
                r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A("192.0.2.99"), ttl=60))
            else:
                r.header.rcode = RCODE.NXDOMAIN
            self.sock.sendto(r.pack(), peer)


def query(ns: str, name: str, *, tcp: bool = False, qtype: str = "A") -> DNSRecord:
    def go() -> DNSRecord:
        q = DNSRecord.question(name, qtype)
        return DNSRecord.parse(q.send("127.0.0.11", 53, tcp=tcp, timeout=5))

    return in_ns(ns, go)


@pytest.fixture
def svc() -> Iterator[DnsService]:
    names = {"web": ["10.9.0.5", "10.9.0.6"], "v6only": ["fd00::5"]}

    def lookup(sandbox: str, qname: str) -> list[str] | None:
        return names.get(qname) if sandbox == "sb1" else None

    up = Upstream()
    s = DnsService(lookup, upstream_port=up.port, forward_timeout=1.0)
    s.upstream = up  # type: ignore[attr-defined]
    s.start()
    yield s
    s.stop()


def test_local_names_forwarding_and_tcp(svc: DnsService, make_netns: Any) -> None:
    ns = make_netns("kdn")
    svc.attach("sb1", f"/run/netns/{ns}", ["127.0.0.1"])
    r = query(ns, "web")
    assert sorted(str(a.rdata) for a in r.rr) == ["10.9.0.5", "10.9.0.6"] and r.rr[0].ttl == 600
    seen = {tuple(str(a.rdata) for a in query(ns, "WEB.").rr) for _ in range(20)}
    assert len(seen) == 2  # shuffled answers
    empty = query(ns, "v6only")  # A of a v6-only name: empty NOERROR
    assert empty.header.rcode == RCODE.NOERROR and not empty.rr
    assert str(query(ns, "v6only", qtype="AAAA").rr[0].rdata) == "fd00::5"
    ext = query(ns, "ext.test")  # not ours: forwarded upstream (from the daemon's namespace)
    assert str(ext.rr[0].rdata) == "192.0.2.99"
    assert query(ns, "missing.test").header.rcode == RCODE.NXDOMAIN  # passed on as is
    assert sorted(str(a.rdata) for a in query(ns, "web", tcp=True).rr) == ["10.9.0.5", "10.9.0.6"]
    svc.detach("sb1")
    with pytest.raises(OSError):
        query(ns, "web")


def test_next_upstream_on_refusal_and_internal(make_netns: Any) -> None:
    bad = Upstream(refuse=True)
    good = Upstream(addr="127.0.0.2", port=bad.port)  # same port, another loopback address
    s = DnsService(lambda sb, q: None, upstream_port=bad.port, forward_timeout=1.0)
    s.start()
    try:
        ns = make_netns("kdn")
        s.attach("x", f"/run/netns/{ns}", ["127.0.0.1", "127.0.0.2"])
        r = query(ns, "ext.test")  # the first refuses: the second one answers
        assert str(r.rr[0].rdata) == "192.0.2.99" and bad.hits >= 1 and good.hits >= 1
        s.attach("x", f"/run/netns/{ns}", ["127.0.0.2"], internal=True)
        assert query(ns, "ext.test").header.rcode == RCODE.REFUSED  # internal: no forwarding
    finally:
        s.stop()


def test_ptr_a_silent_upstream_and_the_forward_limit(make_netns: Any) -> None:
    import ipaddress

    good = Upstream(addr="127.0.0.2")
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes queries, never answers
    silent.bind(("127.0.0.3", good.port))
    names = {("sb", "10.9.0.5"): "web.net1", ("sb", "fd00::5"): "web.net1"}
    s = DnsService(
        lambda sb, q: None,
        reverse=lambda sb, ip: names.get((sb, ip)),
        upstream_port=good.port,
        forward_timeout=0.3,
    )
    s.start()
    try:
        ns = make_netns("kdn")
        s.attach("sb", f"/run/netns/{ns}", ["127.0.0.3", "127.0.0.2"])
        for ip in ("10.9.0.5", "fd00::5"):  # PTR: docker's "name.network."
            r = query(ns, ipaddress.ip_address(ip).reverse_pointer, qtype="PTR")
            assert [str(a.rdata) for a in r.rr] == ["web.net1."] and r.rr[0].ttl == 600
        # An address not ours is forwarded (here: NXDOMAIN from upstream, passed on).
        assert query(ns, "7.0.9.10.in-addr.arpa", qtype="PTR").header.rcode == RCODE.NXDOMAIN
        # The first upstream never answers: after its timeout the next one does.
        assert str(query(ns, "ext.test").rr[0].rdata) == "192.0.2.99"
        s.max_forwards = 0  # docker's 1024 concurrent forwards, reached: REFUSED at once
        assert query(ns, "ext.test").header.rcode == RCODE.REFUSED
        assert query(ns, "5.0.9.10.in-addr.arpa", qtype="PTR").rr  # local answers still
    finally:
        s.stop()
        silent.close()
