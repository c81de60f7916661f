"""Pure wire helpers of the embedded DNS: where a query's question ends, the UDP size a
client takes, and which upstream datagrams count as the answer to a forward."""

from __future__ import annotations

from dnslib import EDNS0, DNSRecord

from kanal.engine.dns.wire import question_end as _question_end
from kanal.engine.dns.wire import udp_size as _udp_size


def test_question_end() -> None:
    q = DNSRecord.question("www.Example.test", "A")
    data = bytes(q.pack())
    # 12-byte header, labels 3 www 7 Example 4 test 0, type, class
    assert _question_end(data) == 12 + (1 + 3 + 1 + 7 + 1 + 4 + 1) + 4
    assert _question_end(data[:-1]) == 0  # cut short
    assert _question_end(data[:4] + b"\x00\x02" + data[6:]) == 0  # two questions
    pointer = data[:12] + b"\xc0\x0c" + data[-4:]  # a compression pointer in a query
    assert _question_end(pointer) == 0
    assert _question_end(b"\x00" * 5) == 0


def test_udp_size() -> None:
    q = DNSRecord.question("x.test", "A")
    assert _udp_size(q) == 512
    q.add_ar(EDNS0(udp_len=4096))
    assert _udp_size(q) == 4096
    small = DNSRecord.question("x.test", "A")
    small.add_ar(EDNS0(udp_len=100))  # less than 512 is read as 512 (RFC 6891)
    assert _udp_size(small) == 512


def test_what_counts_as_the_answer_to_a_forward() -> None:
    from kanal.engine.dns import DnsService, SandboxDns
    from kanal.engine.dns.forward import Forward as _Forward

    svc = DnsService(lambda sb, name: None)
    try:
        q = DNSRecord.question("ext.test", "A")
        data = bytes(q.pack())
        got: list[bytes] = []
        fwd = _Forward(svc, SandboxDns("sb", ["192.0.2.53"]), data, q, got.append, 512)
        answer = bytes(q.reply().pack())
        assert fwd._matches(answer)
        assert fwd._matches(answer.replace(b"ext", b"EXT"))  # case aside (0x20 mixing)
        assert not fwd._matches(data)  # the query itself: no QR bit
        assert not fwd._matches(bytes([data[0] ^ 1]) + answer[1:])  # another id
        other = DNSRecord.question("other.test", "A")
        other.header.id = q.header.id
        assert not fwd._matches(bytes(other.reply().pack()))  # another question
        assert not fwd._matches(answer[:11])
        assert got == []
    finally:
        svc.stop()
