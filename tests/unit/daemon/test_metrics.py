"""The metrics' pure parts: one registry per daemon, labels, address parsing, the
engine's operation timer and the embedded DNS's counters."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kanal.daemon.metrics import Metrics, parse_addr
from kanal.engine.context import EngineContext
from kanal.engine.dns.stats import FORWARD_BUCKETS, DnsStats
from kanal.engine.observe import timed
from kanal.errors import InvalidConfig, NotFound


def samples(m: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(m.render().decode())
        for s in fam.samples
    }


def test_two_daemons_in_one_process_have_their_own_counts() -> None:
    a, b = Metrics(), Metrics()  # the global registry would refuse the second
    a.observe_fastpath("bridge", "ADD", 0, b"{}", 0.002)
    a.observe_fastpath("bridge", "ADD", 0, b"{}", 0.003)
    b.observe_fastpath("bridge", "ADD", 0, b"{}", 0.004)
    key = (
        "kanal_cni_execs_total",
        frozenset({"plugin": "bridge", "command": "ADD", "via": "fastpath"}.items()),
    )
    assert samples(a)[key] == 2
    assert samples(b)[key] == 1


def test_cni_errors_by_the_code_on_stdout() -> None:
    m = Metrics()
    m.observe_fastpath("bridge", "ADD", 1, json.dumps({"code": 7, "msg": "x"}).encode(), 0.01)
    m.observe_fastpath("bridge", "ADD", 1, b"not json", 0.01)  # no code: 999
    m.observe_fastpath("bridge", "ADD", 1, b'{"code": true}', 0.01)  # not an int: 999
    m.observe_engine_exec("portmap", "DEL", 0.01, 11)
    m.observe_fastpath("tuning", "BOGUS", 0, b"", 0.01)  # unknown commands fold into "other"
    s = samples(m)

    def err(plugin: str, cmd: str, code: str) -> float:
        return s.get(
            (
                "kanal_cni_errors_total",
                frozenset({"plugin": plugin, "command": cmd, "code": code}.items()),
            ),
            0,
        )

    assert err("bridge", "ADD", "7") == 1
    assert err("bridge", "ADD", "999") == 2
    assert err("portmap", "DEL", "11") == 1
    labels = {"plugin": "tuning", "command": "other", "via": "fastpath"}
    assert s[("kanal_cni_execs_total", frozenset(labels.items()))] == 1
    assert not any(dict(lbl).get("command") == "BOGUS" for _, lbl in s)


def test_operations_time_and_failures() -> None:
    class Thing:
        def __init__(self) -> None:
            self.ctx = EngineContext(state_dir="/nonexistent")

        @timed("network_create")
        def make(self, fail: bool) -> str:
            if fail:
                raise NotFound("no")
            return "made"

    m, t = Metrics(), Thing()
    assert t.make(False) == "made"  # nobody listens: still works
    t.ctx.on_operation = m.observe_operation
    assert t.make(False) == "made"
    with pytest.raises(NotFound):
        t.make(True)
    s = samples(m)
    op = frozenset({("operation", "network_create")})
    assert s[("kanal_engine_operation_seconds_count", op)] == 2
    assert s[("kanal_engine_operation_errors_total", op)] == 1

    def broken(operation: str, seconds: float, ok: bool) -> None:
        raise RuntimeError("observer bug")

    t.ctx.on_operation = broken
    assert t.make(False) == "made"  # a broken observer never breaks the operation


def test_dns_stats() -> None:
    s = DnsStats()
    s.answer("local", b"\x00\x01\x81\x80")  # NOERROR
    s.answer("local", b"\x00\x01\x81\x83")  # NXDOMAIN
    s.cache_hits += 2
    s.forwarded(b"\x00\x02\x81\x82", 0.003)  # SERVFAIL after 3 ms
    s.forwarded(b"\x00\x03\x81\x80", 99.0)  # beyond the last bound: the +Inf bucket
    assert s.local_answers() == {0: 3, 3: 1}
    assert s.answers[("forwarded", 2)] == 1 and s.answers[("forwarded", 0)] == 1
    assert s.forward_buckets[FORWARD_BUCKETS.index(0.005)] == 1
    assert s.forward_buckets[-1] == 1 and sum(s.forward_buckets) == 2


@pytest.mark.parametrize(
    ("addr", "want"),
    [
        ("127.0.0.1:9323", ("127.0.0.1", 9323)),
        ("[::1]:80", ("::1", 80)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
    ],
)
def test_parse_addr(addr: str, want: tuple[str, int]) -> None:
    assert parse_addr(addr) == want


@pytest.mark.parametrize(
    "addr",
    [
        "",
        "9323",
        ":9323",
        "localhost:9323",
        "127.0.0.1:",
        "127.0.0.1:0",
        "1.2.3.4:65536",
        "::1:80",
        "1.2.3.4:+80",
    ],
)
def test_parse_addr_rejects(addr: str) -> None:
    with pytest.raises(InvalidConfig, match="invalid metrics address"):
        parse_addr(addr)
