"""Embedded DNS: sandboxes on user-defined networks find each other by name.

As docker's (docs/cnm.md, "Embedded DNS"): a sandbox's resolv.conf says ``nameserver 127.0.0.11``
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

The package: :mod:`.wire` (pure helpers on DNS messages), :mod:`.server` (the
service, its epoll loop and the answers), :mod:`.clients` (a sandbox's UDP and
TCP listeners and TCP clients), :mod:`.forward` (a query on its way upstream),
:mod:`.index` (which names each sandbox sees).

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

from kanal.engine.dns.index import NameIndex
from kanal.engine.dns.server import DnsService, SandboxDns

__all__ = ["DnsService", "NameIndex", "SandboxDns"]
