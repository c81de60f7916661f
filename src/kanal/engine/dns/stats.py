"""What the embedded DNS counts: plain integers the serving thread bumps.

The serving thread is the only writer, so no lock: a scrape from another thread
reads ints (each read is atomic; a scrape may see one query counted and its
answer not yet, never a torn value). kanald's metrics turn these into Prometheus
samples at scrape time; the DNS package itself never imports Prometheus.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

__all__ = ["FORWARD_BUCKETS", "RCODES", "DnsStats"]

#: upper bounds (seconds) of the forward latency histogram's buckets
FORWARD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: rcode number → the name used as a label (others: their number)
RCODES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
}


@dataclass
class DnsStats:
    """Counters of one DnsService (queries, answers, refusals, forward latency)."""

    #: every query received (the cached fast path and garbage included)
    queries: int = 0
    #: answers by (source, rcode number); source "local" (ours, cached or not) or
    #: "forwarded" (an upstream's, or SERVFAIL when every upstream failed)
    answers: dict[tuple[str, int], int] = field(default_factory=dict)
    #: local answers sent from the packed cache (counted as local NOERROR too)
    cache_hits: int = 0
    #: queries refused at once because too many forwards were in flight
    refused: int = 0
    #: garbage dropped without an answer
    dropped: int = 0
    #: forward latency: counts per bucket of FORWARD_BUCKETS (+ one for +Inf), and the sum
    forward_buckets: list[int] = field(default_factory=lambda: [0] * (len(FORWARD_BUCKETS) + 1))
    forward_seconds: float = 0.0

    def answer(self, source: str, data: bytes) -> None:
        """One answer ``data`` sent (its rcode is read from the header)."""
        self.count(source, data[3] & 0x0F if len(data) > 3 else 2)

    def count(self, source: str, rcode: int) -> None:
        """One answer of ``rcode`` sent."""
        key = (source, rcode)
        self.answers[key] = self.answers.get(key, 0) + 1

    def forwarded(self, data: bytes, seconds: float) -> None:
        """A forward finished with ``data`` after ``seconds``."""
        self.answer("forwarded", data)
        self.forward_buckets[bisect.bisect_left(FORWARD_BUCKETS, seconds)] += 1
        self.forward_seconds += seconds

    def local_answers(self) -> dict[int, int]:
        """Local answers by rcode, cache hits included (they are all NOERROR)."""
        out = {rc: n for (src, rc), n in self.answers.items() if src == "local"}
        out[0] = out.get(0, 0) + self.cache_hits
        return out
