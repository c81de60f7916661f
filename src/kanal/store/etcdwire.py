"""etcd v3's JSON gateway, the wire: one request with deadlines and failover.

No client library: etcd (≥ 3.4) serves its gRPC API as JSON over HTTP (``/v3/...``),
with base64 keys and values and int64s as strings. :class:`EtcdClient` posts one
request to the first member that serves it within the deadline (see
:mod:`kanal.store.etcd` for the rules), with connections and headers from one
:class:`~kanal.store.etcdconn.Connector`. The Store adapter on top is
:class:`kanal.store.etcd.EtcdStore`; the watch stream is :mod:`.etcdwatch`.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kanal.errors import InvalidConfig, NotFound, Unavailable
from kanal.store import Entry, StoreRefused, check_key
from kanal.store.etcdconn import GATEWAY_REFUSES_CN, Connector, explain_tls_error

__all__ = [
    "REQUEST_BUCKETS",
    "EtcdClient",
    "LeaseNotFound",
    "b64",
    "parse_etcd_url",
    "prefix_end",
    "unb64",
]

# gRPC codes the gateway passes through: 4 deadline exceeded, 14 unavailable
# (no leader, leader changed, request timed out) — worth another member or round.
_RETRY_GRPC = (4, 14)


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def unb64(s: str) -> bytes:
    return base64.b64decode(s)


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix`` (etcd's range_end)."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\0"  # every key


def parse_etcd_url(rest: str) -> tuple[list[tuple[str, int]], str]:
    """``host:port,host:port/prefix`` (what follows ``etcd://``) → (endpoints, prefix)."""
    hosts, _, prefix = rest.partition("/")
    endpoints = []
    for hp in hosts.split(","):
        host, sep, port = hp.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise InvalidConfig(f"invalid etcd endpoint {hp!r}: want host:port")
        endpoints.append((host.strip("[]"), int(port)))
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/kanal/"
    return endpoints, prefix


POOL_IDLE = 8  # kept-alive connections per member, shared by every thread
FAILED_LATELY = 30.0  # s: a member a request failed to reach this recently is tried last
#: upper bounds (seconds) of the request latency histogram's buckets
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LeaseNotFound(NotFound):
    """The lease does not exist (any more): it expired or was revoked."""


class _Again:
    """Ask the same member once more (its token was refused: log in again)."""


_AGAIN = _Again()


@dataclass
class _Call:
    """One request and what its attempts learnt (across members and rounds)."""

    path: str
    data: bytes
    last: Exception | None = None
    slow: bool = False  # a member timed out or could not serve (vs. refused: etcd is down)
    reauth: set[int] = field(default_factory=set)  # members whose token was refused once
    retry: bool = False  # in this round: some member is up but could not serve
    refused: StoreRefused | None = None  # in this round: a member refused us


class EtcdClient:
    """Requests to a set of etcd members (see the module docstring)."""

    def __init__(
        self,
        endpoints: Sequence[tuple[str, int]],
        prefix: str = "/kanal/",
        timeout: float = 5.0,
        attempt_timeout: float = 2.0,
        connector: Connector | None = None,
    ) -> None:
        if not endpoints:
            raise InvalidConfig("no etcd endpoints")
        self.endpoints = list(endpoints)
        self.prefix = prefix
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        #: the one source of connections and headers (TLS, client certificate, user)
        self.connector = connector or Connector()
        self._idle: dict[int, list[http.client.HTTPConnection]] = {}  # per member
        self._pool_lock = threading.Lock()
        self._preferred = 0
        #: member -> when (monotonic) a request last failed to reach it (see _order)
        self._failed: dict[int, float] = {}
        #: per gateway path ("/v3/kv/range"...): [calls, failures, seconds, bucket counts]
        #: (REQUEST_BUCKETS), read by kanald's metrics; failover and retries included
        self.request_stats: dict[str, list[Any]] = {}
        self._stats_lock = threading.Lock()

    def _checkout(self, i: int, timeout: float) -> http.client.HTTPConnection:
        """A kept-alive connection to member ``i`` (any thread's idle one), or a new one.

        Shared between threads because kanald answers each API request on a thread
        of its own: a connection per thread meant a TCP handshake per request, one
        round trip more (and a 1 s SYN retransmission on a lossy underlay)."""
        with self._pool_lock:
            idle = self._idle.get(i)
            c = idle.pop() if idle else None
        if c is None:
            c = self.connector.http(self.endpoints[i], timeout)
        c.timeout = timeout
        if c.sock is not None:
            c.sock.settimeout(timeout)
        return c

    def _checkin(self, i: int, c: http.client.HTTPConnection) -> None:
        """Back to the pool after a whole answer was read (closed beyond POOL_IDLE)."""
        with self._pool_lock:
            idle = self._idle.setdefault(i, [])
            if len(idle) < POOL_IDLE:
                idle.append(c)
                return
        c.close()

    def close(self) -> None:
        """Close the idle connections (the next request connects anew)."""
        with self._pool_lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for c in conns:
            c.close()

    def _where(self, i: int) -> str:
        host, port = self.endpoints[i]
        return f"{host}:{port}"

    def call(
        self, path: str, body: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """POST one gateway request within the deadline, failing over between endpoints.

        Raises Unavailable (no member could serve it in time), StoreRefused (every
        member refused us: TLS or authentication, or our user lacks the permission),
        LeaseNotFound.
        """
        start, ok = time.monotonic(), False
        try:
            out = self._call(path, body, timeout)
            ok = True
            return out
        finally:
            self._count(path, time.monotonic() - start, ok)

    def _count(self, path: str, seconds: float, ok: bool) -> None:
        with self._stats_lock:
            st = self.request_stats.setdefault(path, [0, 0, 0.0, [0] * (len(REQUEST_BUCKETS) + 1)])
            st[0] += 1
            st[1] += 0 if ok else 1
            st[2] += seconds
            i = 0
            while i < len(REQUEST_BUCKETS) and seconds > REQUEST_BUCKETS[i]:
                i += 1
            st[3][i] += 1

    def _call(self, path: str, body: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        call = _Call(path, json.dumps(body).encode())
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        n = len(self.endpoints)
        backoff = 0.05
        while True:
            call.retry, call.refused = False, None
            order = self._order()
            k = 0
            while k < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                i = order[k]
                k += 1
                out = self._attempt(call, i, remaining)
                if isinstance(out, _Again):
                    k -= 1
                    continue
                if out is None:
                    continue
                self._preferred = i
                self._failed.pop(i, None)
                return out
            if call.refused is not None and not call.retry:
                # Every member that answered refused us: TLS or user, not an outage.
                raise call.refused
            if not call.retry or time.monotonic() + backoff >= deadline:
                if call.refused is not None:
                    raise call.refused
                what = "etcd is unreachable"
                if call.slow:
                    what = "etcd did not answer in time"
                raise Unavailable(what, f"{self._names()}: {call.last}")
            time.sleep(backoff * (0.5 + random.random()))  # jitter
            backoff = min(backoff * 2, 0.5)

    def _order(self) -> list[int]:
        """The members in the order a request tries them: the one the last request
        reached, then the others, those that failed lately last.

        Why: a member cut off from us costs a whole attempt's timeout each time it is
        tried; when the preferred member is slow once (a lost packet), the failover
        should go to a member that answers, not to that one, or the deadline runs out
        on the two timeouts together."""
        n = len(self.endpoints)
        first = self._preferred % n
        rest = [(first + k) % n for k in range(1, n)]
        now = time.monotonic()
        rest.sort(key=lambda i: now - self._failed.get(i, now - FAILED_LATELY) < FAILED_LATELY)
        return [first, *rest]

    def _attempt(self, call: _Call, i: int, remaining: float) -> dict[str, Any] | _Again | None:
        """One try of ``call`` on member ``i``: its answer, ``_AGAIN`` (the same member
        once more), or None (what went wrong is noted in ``call``: the next one)."""
        attempt = min(remaining, self.attempt_timeout)
        c = self._checkout(i, attempt)
        fresh = c.sock is None  # a new connection (vs. a kept-alive one)
        try:
            # (Logging in, rare and slow — a raft write and a bcrypt — may take
            # what is left of the deadline, not only one attempt's share.)
            headers = self.connector.headers(self.endpoints[i], remaining)
            c.request("POST", call.path, body=call.data, headers=headers)
            resp = c.getresponse()
            raw = resp.read()
        except StoreRefused as e:  # authentication refused by this member
            c.close()
            call.refused = e
            return None
        except ConnectionRefusedError as e:
            c.close()
            call.last = e
            self._failed[i] = time.monotonic()
            return None
        except ssl.SSLError as e:
            c.close()
            why = explain_tls_error(e, self.connector.settings, self._where(i))
            if why is None and fresh and not isinstance(e, TimeoutError):
                why = self.connector.diagnose(self.endpoints[i], attempt)
            if why is not None:
                call.refused = StoreRefused(why)
                return None
            call.last = e
            call.retry = True
            return None
        except (OSError, http.client.HTTPException) as e:
            # A reset, a timeout, a stale keep-alive connection: the member
            # may be dying or electing; another member or round may answer.
            # Or, over TLS, it dropped a new connection for our certificate:
            # ask it.
            c.close()
            if fresh and not isinstance(e, TimeoutError):
                why = self.connector.diagnose(self.endpoints[i], attempt)
                if why is not None:
                    call.refused = StoreRefused(why)
                    return None
            call.last = e
            call.retry = True
            call.slow = call.slow or isinstance(e, TimeoutError)
            self._failed[i] = time.monotonic()
            return None
        self._checkin(i, c)  # the whole answer was read: reusable
        return self._reply(call, i, resp.status, raw)

    def _reply(
        self, call: _Call, i: int, status: int, raw: bytes
    ) -> dict[str, Any] | _Again | None:
        """Member ``i``'s answer: the object, or what to do next (as :meth:`_attempt`).

        Raises StoreRefused, LeaseNotFound, Unavailable (etcd refused the request)."""
        try:
            out: dict[str, Any] = json.loads(raw) if raw.strip() else {}
        except ValueError:
            out = {"message": raw[:200].decode(errors="replace")}
        if status == 200:
            return out
        msg = str(out.get("message") or out.get("error") or raw.decode(errors="replace"))
        code = int(out.get("code", 0) or 0)
        if code == 16 and i not in call.reauth:
            # Our token expired or this member never issued it: once more.
            self.connector.forget_token(self.endpoints[i])
            call.reauth.add(i)
            return _AGAIN
        denied = self._refusal(call.path, code, msg)
        if denied is not None:
            raise denied
        if status in (503, 504) or code in _RETRY_GRPC or "leader" in msg:
            call.last = Unavailable(f"etcd {self._where(i)}", msg)
            call.retry = call.slow = True
            return None
        if code == 5 and "lease" in msg:
            raise LeaseNotFound("etcd lease not found", msg)
        raise Unavailable(f"etcd refused {call.path}", msg)

    def _refusal(self, path: str, code: int, msg: str) -> StoreRefused | None:
        """etcd's answer as a StoreRefused when it is about who we are, else None."""
        user = self.connector.settings.username
        denied = code == 7 or "permission denied" in msg
        if "user name is empty" in msg or (not user and (denied or code == 16)):
            return StoreRefused(
                "etcd's authentication is on: give kv.username and kv.password "
                "(or kv.passwordfile)"
            )
        if denied:
            what = "write" if path.rsplit("/", 1)[-1] in ("put", "txn", "deleterange") else "do"
            who = f"etcd user {user!r}" if user else "kanal (no etcd user)"
            return StoreRefused(
                f"{who} may not {what} this under {self.prefix} ({path}): permission denied"
            )
        if "CommonName of client" in msg:
            return StoreRefused(GATEWAY_REFUSES_CN)
        if code == 16:
            return StoreRefused(f"etcd does not accept user {user!r}'s token: {msg}")
        return None

    def _names(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.endpoints)

    def _k(self, key: str) -> bytes:
        return (self.prefix + check_key(key)).encode()

    def entry(self, kv: dict[str, Any]) -> Entry:
        """A gateway key-value object as an Entry (the key without our prefix)."""
        key = unb64(kv["key"]).decode()[len(self.prefix) :]
        return Entry(key, unb64(kv.get("value", "")), int(kv.get("mod_revision", 0)))

    def leader_index(self) -> int | None:
        """Which of our endpoints is the cluster's leader, as the members say (None
        when no member answers in time or the leader is none of our endpoints).

        Watches go there: the leader applies a write as it commits it, a follower
        only when it next hears from the leader (0.2-0.3 s later over the lab's
        impaired links; docs/overlay.md)."""
        try:
            st = self.call("/v3/maintenance/status", {}, timeout=self.attempt_timeout)
            leader = str(st.get("leader") or "")
            if leader in ("", "0"):
                return None
            if str((st.get("header") or {}).get("member_id") or "") == leader:
                return self._preferred  # the member that answered (call() noted it)
            members = self.call("/v3/cluster/member/list", {}, timeout=self.attempt_timeout)
        except (Unavailable, StoreRefused):
            return None
        for m in members.get("members") or []:
            if str(m.get("ID") or "") != leader:
                continue
            for url in m.get("clientURLs") or []:
                try:
                    u = urlsplit(str(url))
                    where = (u.hostname or "", u.port or 2379)
                except ValueError:
                    continue
                if where in self.endpoints:
                    return self.endpoints.index(where)
        return None

    def probe(self, i: int) -> None:
        """Raise Unavailable unless member ``i`` answers and has a leader.

        Over a kept-alive connection when there is one: a watch probes its member
        every few idle seconds, and a new connection each time cost a handshake
        and, on a lossy underlay, now and then a 1 s SYN retransmission that
        outlasted the probe's deadline and broke a healthy watch."""
        host, port = self.endpoints[i]
        c = self._checkout(i, self.attempt_timeout)
        try:
            headers = self.connector.headers(self.endpoints[i], self.attempt_timeout)
            c.request("POST", "/v3/maintenance/status", body=b"{}", headers=headers)
            resp = c.getresponse()
            out = json.loads(resp.read() or b"{}")
        except BaseException:
            c.close()
            raise
        self._checkin(i, c)
        if resp.status != 200 or not int(out.get("leader", 0) or 0):
            raise Unavailable(f"etcd {host}:{port} has no leader", str(out))
