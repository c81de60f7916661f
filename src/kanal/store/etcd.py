"""The etcd store: the same contract over etcd v3's JSON gateway (``/v3/...``).

No client library: etcd (≥ 3.4) serves its gRPC API as JSON over HTTP, with
base64 keys and values and int64s as strings. Revisions are etcd's own (its
``mod_revision`` is our ``mod_rev``), conditions are txn compares on
``mod_revision`` (an absent key has 0, which is what ``expect=0`` needs), so the
store behaves the same on one host and across hosts. Several endpoints can be
given; a request that cannot reach one tries the next. Requests carry
``Grpc-Metadata-hasleader: true`` so a member cut off from the cluster refuses
instead of answering from stale state (multihost.md §1.5).

URL: ``etcd://host:port[,host:port...][/prefix]`` — every key is stored under
``prefix`` (default ``/kanal/``), so several kanal clusters (or tests) can share
one etcd. ``etcds://`` is the same over TLS; certificates and etcd users are
options (:func:`open_etcd`). Every connection — requests, leases, transactions,
watch streams, probes — comes from one :class:`~kanal.store.etcdconn.Connector`,
which holds those settings, re-reads rotated certificates and keeps the
authentication tokens; refusals (TLS, user, permission) raise
:class:`~kanal.store.StoreRefused`, one line each, and are not retried as outages.

Beyond the :class:`~kanal.store.Store` contract, the cluster layer uses:

- **Deadlines.** Every call takes ``timeout=`` (seconds, default the store's
  ``timeout``): the whole call, failover and retries included, ends by then.
  One attempt waits at most ``attempt_timeout``. A member that refuses the
  connection is skipped at once; a member that answers "no leader", "leader
  changed", "timed out" (503/504) or does not answer in time is retried — on the
  next member, then again in rounds with a short backoff — until the deadline.
  When every member refused the connection in a round, the call fails at once
  (etcd is down: no point waiting). Failures raise :class:`kanal.errors.Unavailable`.
  A write whose attempt timed out may still have been applied: callers that need
  to know write a unique token and read it back on conflict (see cluster.gipam).
- **Transactions with any compare**: :meth:`EtcdStore.txn_if` with :class:`Cmp`
  (create/mod/version revision, value, lease), :class:`LeasePut` and :class:`Get`.
- **Snapshots**: :meth:`EtcdStore.snapshot` = a prefix listing plus the revision
  it was read at (the start point of a watch).
- **Watches**: :meth:`EtcdStore.watch` — a blocking iterator of
  :class:`WatchBatch` over ``/v3/watch`` (a chunked JSON stream) that resumes from
  the last seen revision on another member after a lost connection, re-lists and
  yields a ``resync`` batch when that revision was compacted, requires a leader
  (the header above: the stream ends with "no leader" on a member cut off from
  quorum, and we move on), and probes an idle member with ``/v3/maintenance/status``
  so a silently dead peer (no FIN/RST) is noticed within ``idle_probe`` seconds.
- **Leases**: :meth:`lease_grant`, :meth:`lease_keepalive`, :meth:`lease_revoke`,
  ``put(..., lease=id)`` and :class:`Lease`, a thread that keeps one lease alive.
"""

from __future__ import annotations

import base64
import builtins
import http.client
import json
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kanal.errors import InvalidConfig, NotFound, Unavailable
from kanal.store import Delete, Entry, Put, StoreConflict, StoreRefused, check_key
from kanal.store.etcdconn import (
    GATEWAY_REFUSES_CN,
    Connector,
    EtcdSettings,
    explain_tls_error,
)

__all__ = [
    "Cmp",
    "EtcdStore",
    "Get",
    "Lease",
    "LeaseNotFound",
    "LeasePut",
    "TxnResult",
    "WatchBatch",
    "WatchEvent",
    "open_etcd",
    "parse_etcd_url",
]

# gRPC codes the gateway passes through: 4 deadline exceeded, 14 unavailable
# (no leader, leader changed, request timed out) — worth another member or round.
_RETRY_GRPC = (4, 14)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s)


def _prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix`` (etcd's range_end)."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\0"  # every key


def open_etcd(url: str, opts: Sequence[str] = (), *, timeout: float = 5.0) -> EtcdStore:
    """An EtcdStore from ``etcd://`` (or ``http://``), ``etcds://`` (or ``https://``)
    ``host:port[,host:port...][/prefix]`` and ``--cluster-store-opt`` values
    (``kv.cacertfile=...``; see :mod:`kanal.store.etcdconn`).

    Raises InvalidConfig: a malformed URL or option, unusable certificate files.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise InvalidConfig(f"invalid cluster store {url!r}: want etcds://host:port[,...]")
    settings = EtcdSettings.from_url(scheme, opts)
    endpoints, prefix = parse_etcd_url(rest)
    return EtcdStore(endpoints, prefix, timeout=timeout, connector=Connector(settings))


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


class LeaseNotFound(NotFound):
    """The lease does not exist (any more): it expired or was revoked."""


@dataclass(frozen=True)
class Cmp:
    """One txn compare. ``target``: ``create``/``mod``/``version`` (revisions, int),
    ``value`` (bytes) or ``lease`` (lease id, 0 = none). ``op``: ``==``, ``!=``, ``<``, ``>``.

    An absent key has create/mod revision 0, version 0, lease 0 and never equals a value.
    """

    key: str
    target: str
    value: int | bytes
    op: str = "=="

    @staticmethod
    def absent(key: str) -> Cmp:
        return Cmp(key, "create", 0)

    @staticmethod
    def value_is(key: str, value: bytes) -> Cmp:
        return Cmp(key, "value", value)

    @staticmethod
    def mod_is(key: str, rev: int) -> Cmp:
        return Cmp(key, "mod", rev)

    @staticmethod
    def lease_is(key: str, lease: int) -> Cmp:
        return Cmp(key, "lease", lease)


@dataclass(frozen=True)
class LeasePut:
    """Write ``value`` at ``key`` attached to ``lease`` (the key goes when the lease does)."""

    key: str
    value: bytes
    lease: int


@dataclass(frozen=True)
class Get:
    """Read ``key`` (or every key under it with ``prefix=True``) inside a txn."""

    key: str
    prefix: bool = False


@dataclass(frozen=True)
class TxnResult:
    """``succeeded``: whether every compare held. ``gets``: the entries each :class:`Get`
    of the branch that ran returned, in order (other ops contribute nothing)."""

    succeeded: bool
    revision: int
    gets: list[list[Entry]] = field(default_factory=list)


@dataclass(frozen=True)
class WatchEvent:
    """``type`` is ``put`` or ``delete``; ``value`` is b"" for a delete; ``prev`` is the
    entry before the event when etcd still had it."""

    type: str
    key: str
    value: bytes
    mod_rev: int
    lease: int
    prev: Entry | None


@dataclass(frozen=True)
class WatchBatch:
    """What one watch message brought.

    ``resync`` is not None after the watched revision was compacted: it is the whole
    listing of the prefix at ``revision`` and replaces whatever the consumer knew
    (``events`` is then empty). Otherwise ``events`` happened, in order, up to
    ``revision``.
    """

    revision: int
    events: list[WatchEvent]
    resync: list[Entry] | None = None


class EtcdStore:
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
        self._local = threading.local()
        self._preferred = 0

    # --- transport ---------------------------------------------------------------

    def _conn(self, i: int, timeout: float) -> http.client.HTTPConnection:
        conns: dict[int, http.client.HTTPConnection] = self._local.__dict__.setdefault("c", {})
        c = conns.get(i)
        if c is None:
            c = conns[i] = self.connector.http(self.endpoints[i], timeout)
        c.timeout = timeout
        if c.sock is not None:
            c.sock.settimeout(timeout)
        return c

    def _drop(self, i: int) -> None:
        c = self._local.__dict__.get("c", {}).pop(i, None)
        if c is not None:
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
        data = json.dumps(body).encode()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        last: Exception | None = None
        n = len(self.endpoints)
        backoff = 0.05
        slow = False  # a member timed out or could not serve (vs. refused: etcd is down)
        reauth: set[int] = set()  # members whose token was refused once in this call
        while True:
            retry = False  # some member is up but could not serve: worth another round
            refused: StoreRefused | None = None
            k = 0
            while k < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                i = (self._preferred + k) % n
                k += 1
                attempt = min(remaining, self.attempt_timeout)
                c = self._conn(i, attempt)
                fresh = c.sock is None  # a new connection (vs. a kept-alive one)
                try:
                    # (Logging in, rare and slow — a raft write and a bcrypt — may take
                    # what is left of the deadline, not only one attempt's share.)
                    headers = self.connector.headers(self.endpoints[i], remaining)
                    c.request("POST", path, body=data, headers=headers)
                    resp = c.getresponse()
                    raw = resp.read()
                except StoreRefused as e:  # authentication refused by this member
                    self._drop(i)
                    refused = e
                    continue
                except ConnectionRefusedError as e:
                    self._drop(i)
                    last = e
                    continue
                except ssl.SSLError as e:
                    self._drop(i)
                    why = explain_tls_error(e, self.connector.settings, self._where(i))
                    if why is None and fresh and not isinstance(e, TimeoutError):
                        why = self.connector.diagnose(self.endpoints[i], attempt)
                    if why is not None:
                        refused = StoreRefused(why)
                        continue
                    last = e
                    retry = True
                    continue
                except (OSError, http.client.HTTPException) as e:
                    # A reset, a timeout, a stale keep-alive connection: the member
                    # may be dying or electing; another member or round may answer.
                    # Or, over TLS, it dropped a new connection for our certificate:
                    # ask it.
                    self._drop(i)
                    if fresh and not isinstance(e, TimeoutError):
                        why = self.connector.diagnose(self.endpoints[i], attempt)
                        if why is not None:
                            refused = StoreRefused(why)
                            continue
                    last = e
                    retry = True
                    slow = slow or isinstance(e, TimeoutError)
                    continue
                try:
                    out: dict[str, Any] = json.loads(raw) if raw.strip() else {}
                except ValueError:
                    out = {"message": raw[:200].decode(errors="replace")}
                if resp.status != 200:
                    msg = str(
                        out.get("message") or out.get("error") or raw.decode(errors="replace")
                    )
                    code = int(out.get("code", 0) or 0)
                    if code == 16 and i not in reauth:
                        # Our token expired or this member never issued it: once more.
                        self.connector.forget_token(self.endpoints[i])
                        reauth.add(i)
                        k -= 1
                        continue
                    denied = self._refusal(path, code, msg)
                    if denied is not None:
                        raise denied
                    if resp.status in (503, 504) or code in _RETRY_GRPC or "leader" in msg:
                        last = Unavailable(f"etcd {self._where(i)}", msg)
                        retry = slow = True
                        continue
                    if code == 5 and "lease" in msg:
                        raise LeaseNotFound("etcd lease not found", msg)
                    raise Unavailable(f"etcd refused {path}", msg)
                self._preferred = i
                return out
            if refused is not None and not retry:
                # Every member that answered refused us: TLS or user, not an outage.
                raise refused
            if not retry or time.monotonic() + backoff >= deadline:
                if refused is not None:
                    raise refused
                what = "etcd is unreachable"
                if slow:
                    what = "etcd did not answer in time"
                raise Unavailable(what, f"{self._names()}: {last}")
            time.sleep(backoff * (0.5 + random.random()))  # jitter
            backoff = min(backoff * 2, 0.5)

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

    def _entry(self, kv: dict[str, Any]) -> Entry:
        key = _unb64(kv["key"]).decode()[len(self.prefix) :]
        return Entry(key, _unb64(kv.get("value", "")), int(kv.get("mod_revision", 0)))

    # --- the contract ------------------------------------------------------------

    def get(self, key: str, *, timeout: float | None = None) -> Entry | None:
        out = self.call("/v3/kv/range", {"key": _b64(self._k(key))}, timeout=timeout)
        kvs = out.get("kvs") or []
        return self._entry(kvs[0]) if kvs else None

    def list(self, prefix: str, *, timeout: float | None = None) -> list[Entry]:
        return self.snapshot(prefix, timeout=timeout)[0]

    def any(self, prefix: str, *, timeout: float | None = None) -> bool:
        start = (self.prefix + prefix).encode()
        out = self.call(
            "/v3/kv/range",
            {
                "key": _b64(start),
                "range_end": _b64(_prefix_end(start)),
                "limit": 1,
                "keys_only": True,
            },
            timeout=timeout,
        )
        return bool(out.get("kvs"))

    def snapshot(
        self, prefix: str, *, timeout: float | None = None
    ) -> tuple[builtins.list[Entry], int]:
        """Every entry under ``prefix`` (sorted by key) and the revision it was read at."""
        start = (self.prefix + prefix).encode()
        out = self.call(
            "/v3/kv/range",
            {"key": _b64(start), "range_end": _b64(_prefix_end(start)), "sort_target": "KEY"},
            timeout=timeout,
        )
        entries = [self._entry(kv) for kv in out.get("kvs") or []]
        return entries, int(out["header"]["revision"])

    def put(
        self,
        key: str,
        value: bytes,
        *,
        expect: int | None = None,
        lease: int = 0,
        timeout: float | None = None,
    ) -> int:
        if expect is None:
            body: dict[str, Any] = {"key": _b64(self._k(key)), "value": _b64(value)}
            if lease:
                body["lease"] = str(lease)
            out = self.call("/v3/kv/put", body, timeout=timeout)
            return int(out["header"]["revision"])
        op: Put | LeasePut = LeasePut(key, value, lease) if lease else Put(key, value)
        res = self.txn_if([Cmp.mod_is(key, expect)], [op], timeout=timeout)
        if not res.succeeded:
            self._conflict([Put(key, value, expect)])
        return res.revision

    def delete(self, key: str, *, expect: int | None = None, timeout: float | None = None) -> bool:
        if expect is None:
            out = self.call("/v3/kv/deleterange", {"key": _b64(self._k(key))}, timeout=timeout)
            return int(out.get("deleted", 0)) > 0
        out = self._txn([Delete(key, expect)], timeout)
        resp = (out.get("responses") or [{}])[0].get("response_delete_range") or {}
        return int(resp.get("deleted", 0)) > 0

    def txn(self, ops: Sequence[Put | Delete], *, timeout: float | None = None) -> int:
        out = self._txn(ops, timeout)
        return int(out["header"]["revision"])

    def _txn(self, ops: Sequence[Put | Delete], timeout: float | None) -> dict[str, Any]:
        compare = [self._cmp(Cmp.mod_is(op.key, op.expect)) for op in ops if op.expect is not None]
        success = [self._op(op) for op in ops]
        out = self.call(
            "/v3/kv/txn", {"compare": compare, "success": success, "failure": []}, timeout=timeout
        )
        if not out.get("succeeded", False):
            self._conflict(ops)
        return out

    def _conflict(self, ops: Sequence[Put | Delete]) -> None:
        for op in ops:  # name the first key whose condition failed
            if op.expect is None:
                continue
            have = self.get(op.key)
            rev = have.mod_rev if have else 0
            if rev != op.expect:
                what = "exists" if have and op.expect == 0 else f"is at revision {rev}"
                raise StoreConflict(f"store key {op.key!r} {what}")
        raise StoreConflict("store transaction lost a race; retry")

    def revision(self) -> int:
        out = self.call(
            "/v3/kv/range", {"key": _b64(self._k("revision-probe")), "count_only": True}
        )
        return int(out["header"]["revision"])

    def close(self) -> None:
        """Close this thread's connections (the next request connects anew)."""
        conns = self._local.__dict__.get("c", {})
        for c in conns.values():
            c.close()
        conns.clear()

    # --- transactions with any compare ----------------------------------------------

    def _cmp(self, c: Cmp) -> dict[str, Any]:
        ops = {"==": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS", ">": "GREATER"}
        if c.op not in ops:
            raise InvalidConfig(f"invalid compare operator {c.op!r}")
        out: dict[str, Any] = {"key": _b64(self._k(c.key)), "result": ops[c.op]}
        if c.target == "value":
            if not isinstance(c.value, bytes):
                raise InvalidConfig("a value compare needs bytes")
            out.update(target="VALUE", value=_b64(c.value))
        elif c.target in ("create", "mod", "version", "lease"):
            field_ = {
                "create": "create_revision",
                "mod": "mod_revision",
                "version": "version",
                "lease": "lease",
            }[c.target]
            out.update(target="MOD" if c.target == "mod" else c.target.upper())
            out[field_] = str(int(c.value))
        else:
            raise InvalidConfig(f"invalid compare target {c.target!r}")
        return out

    def _op(self, op: Put | Delete | LeasePut | Get) -> dict[str, Any]:
        k = _b64(self._k(op.key))
        if isinstance(op, Put):
            return {"request_put": {"key": k, "value": _b64(op.value)}}
        if isinstance(op, LeasePut):
            return {"request_put": {"key": k, "value": _b64(op.value), "lease": str(op.lease)}}
        if isinstance(op, Delete):
            return {"request_delete_range": {"key": k}}
        rng: dict[str, Any] = {"key": k}
        if op.prefix:
            rng["range_end"] = _b64(_prefix_end(self._k(op.key)))
        return {"request_range": rng}

    def txn_if(
        self,
        compare: Sequence[Cmp],
        success: Sequence[Put | Delete | LeasePut | Get],
        failure: Sequence[Put | Delete | LeasePut | Get] = (),
        *,
        timeout: float | None = None,
    ) -> TxnResult:
        """One etcd transaction: if every compare holds run ``success``, else ``failure``.

        ``Put.expect``/``Delete.expect`` are ignored here: say it with a :class:`Cmp`.
        At most 128 ops per branch (etcd's default ``--max-txn-ops``).
        Raises Unavailable, LeaseNotFound (a LeasePut on a gone lease).
        """
        body = {
            "compare": [self._cmp(c) for c in compare],
            "success": [self._op(o) for o in success],
            "failure": [self._op(o) for o in failure],
        }
        out = self.call("/v3/kv/txn", body, timeout=timeout)
        ok = bool(out.get("succeeded", False))
        gets = []
        for r in out.get("responses") or []:
            if "response_range" in r:
                gets.append([self._entry(kv) for kv in r["response_range"].get("kvs") or []])
        return TxnResult(ok, int(out["header"]["revision"]), gets)

    # --- leases -------------------------------------------------------------------

    def lease_grant(self, ttl: int, *, timeout: float | None = None) -> tuple[int, int]:
        """A new lease; returns (id, granted TTL in seconds)."""
        out = self.call("/v3/lease/grant", {"TTL": str(ttl)}, timeout=timeout)
        if out.get("error"):
            raise Unavailable("etcd refused a lease", str(out["error"]))
        return int(out["ID"]), int(out.get("TTL", ttl))

    def lease_keepalive(self, lease: int, *, timeout: float | None = None) -> int:
        """Refresh ``lease`` once; returns its new TTL, 0 when it expired or never existed."""
        out = self.call("/v3/lease/keepalive", {"ID": str(lease)}, timeout=timeout)
        return int((out.get("result") or {}).get("TTL", 0))

    def lease_revoke(self, lease: int, *, timeout: float | None = None) -> bool:
        """Revoke ``lease`` (its keys are deleted); False if it was already gone."""
        try:
            self.call("/v3/lease/revoke", {"ID": str(lease)}, timeout=timeout)
        except LeaseNotFound:
            return False
        return True

    # --- watch --------------------------------------------------------------------

    def watch(
        self,
        prefix: str,
        start_revision: int,
        *,
        stop: threading.Event | None = None,
        idle_probe: float = 3.0,
        on_error: Callable[[Exception], None] | None = None,
    ) -> Iterator[WatchBatch]:
        """Every change under ``prefix`` from ``start_revision`` on, as batches, forever.

        Blocks; ends only when ``stop`` is set (checked at least every second) or the
        consumer closes the generator. Start from ``snapshot(prefix)[1] + 1`` to miss
        nothing. Connection problems are not raised: each one is passed to
        ``on_error`` (to report etcd as down) and the watch resumes from the last
        revision it delivered, on the next member, with a backoff up to 1 s.
        """
        rev = start_revision
        n = len(self.endpoints)
        i = self._preferred
        backoff = 0.1
        while stop is None or not stop.is_set():
            stream = _WatchStream(
                self.connector, self.endpoints[i], self.attempt_timeout, self.timeout
            )
            try:
                stream.open(self._watch_request(prefix, rev))
                last_data = time.monotonic()
                for msg in stream.messages(stop):
                    if msg is None:  # a quiet second: is the member still there?
                        if time.monotonic() - last_data >= idle_probe:
                            self._probe(i)
                            last_data = time.monotonic()
                        continue
                    last_data = time.monotonic()
                    backoff = 0.1
                    if "error" in msg:
                        raise self._watch_error(i, str(msg["error"]))
                    res = msg.get("result") or {}
                    if int(res.get("compact_revision", 0) or 0):
                        entries, at = self.snapshot(prefix)
                        rev = at + 1
                        yield WatchBatch(at, [], resync=entries)
                        break  # re-create the watch from the listing
                    if res.get("canceled"):
                        raise self._watch_error(i, str(res.get("cancel_reason") or res))
                    events = [self._event(e) for e in res.get("events") or []]
                    hdr = int((res.get("header") or {}).get("revision", 0) or 0)
                    if events:
                        rev = max(events[-1].mod_rev, hdr) + 1
                        yield WatchBatch(rev - 1, events)
                    elif hdr and not res.get("created"):
                        rev = max(rev, hdr + 1)  # a progress notification
            except (OSError, ValueError, http.client.HTTPException, Unavailable) as e:
                if on_error is not None:
                    on_error(self._as_unavailable(i, e))
                i = (i + 1) % n
                if stop is not None:
                    if stop.wait(backoff):
                        return
                else:
                    time.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                stream.close()

    def _watch_request(self, prefix: str, rev: int) -> dict[str, Any]:
        start = (self.prefix + prefix).encode()
        return {
            "create_request": {
                "key": _b64(start),
                "range_end": _b64(_prefix_end(start)),
                "start_revision": str(rev),
                "prev_kv": True,
                "progress_notify": True,
            }
        }

    def _as_unavailable(self, i: int, e: Exception) -> Unavailable:
        if isinstance(e, Unavailable):
            return e
        if isinstance(e, ssl.SSLError):
            why = explain_tls_error(e, self.connector.settings, self._where(i))
            if why is not None:
                return StoreRefused(why)
        return Unavailable("etcd watch", str(e))

    def _watch_error(self, i: int, msg: str) -> Unavailable:
        """What a watch stream's error or cancellation means; forgets a refused token."""
        if "auth token" in msg:
            self.connector.forget_token(self.endpoints[i])  # the next stream authenticates
            return Unavailable("etcd watch: token expired", msg)
        if "permission denied" in msg:
            user = self.connector.settings.username or "(none)"
            return StoreRefused(f"etcd user {user!r} may not watch under {self.prefix}", msg)
        return Unavailable("etcd watch ended", msg)

    def _probe(self, i: int) -> None:
        host, port = self.endpoints[i]
        c = self.connector.http(self.endpoints[i], self.attempt_timeout)
        try:
            headers = self.connector.headers(self.endpoints[i], self.attempt_timeout)
            c.request("POST", "/v3/maintenance/status", body=b"{}", headers=headers)
            resp = c.getresponse()
            out = json.loads(resp.read() or b"{}")
        finally:
            c.close()
        if resp.status != 200 or not int(out.get("leader", 0) or 0):
            raise Unavailable(f"etcd {host}:{port} has no leader", str(out))

    def _event(self, e: dict[str, Any]) -> WatchEvent:
        kv = e.get("kv") or {}
        prev = e.get("prev_kv")
        return WatchEvent(
            type="delete" if e.get("type") == "DELETE" else "put",
            key=_unb64(kv["key"]).decode()[len(self.prefix) :],
            value=_unb64(kv.get("value", "")),
            mod_rev=int(kv.get("mod_revision", 0)),
            lease=int(kv.get("lease", 0) or 0),
            prev=self._entry(prev) if prev else None,
        )


class _WatchStream:
    """One ``/v3/watch`` HTTP request and its chunked, newline-separated JSON answers.

    Parsed by hand over the socket so a read timeout (our one-second tick) never
    leaves a half-read chunk behind.
    """

    def __init__(
        self,
        connector: Connector,
        endpoint: tuple[str, int],
        connect_timeout: float,
        auth_timeout: float = 5.0,
    ) -> None:
        self.connector = connector
        self.auth_timeout = auth_timeout
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        self.sock: socket.socket | None = None
        self.buf = b""  # raw bytes not yet de-chunked
        self.body = b""  # de-chunked bytes not yet split into lines
        self.ended = False

    def open(self, request: dict[str, Any]) -> None:
        host, port = self.endpoint
        headers = self.connector.headers(self.endpoint, self.auth_timeout)
        self.sock = self.connector.socket(self.endpoint, self.connect_timeout)
        body = json.dumps(request).encode()
        lines = ["POST /v3/watch HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += [f"Content-Length: {len(body)}", "", ""]
        head = "\r\n".join(lines)
        self.sock.sendall(head.encode() + body)
        self.sock.settimeout(1.0)
        while b"\r\n\r\n" not in self.buf:
            self._recv(wait=False)
        head_b, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = head_b.split(b"\r\n", 1)[0]
        if b" 200 " not in status + b" ":
            raise Unavailable("etcd watch refused", status.decode(errors="replace"))

    def _recv(self, *, wait: bool) -> bool:
        """Read more; False on a quiet second when ``wait``. EOF raises."""
        assert self.sock is not None
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            if wait:
                return False
            raise
        if not data:
            raise ConnectionResetError("etcd closed the watch stream")
        self.buf += data
        return True

    def _dechunk(self) -> None:
        while True:
            line, sep, rest = self.buf.partition(b"\r\n")
            if not sep:
                return
            size = int(line.split(b";")[0] or b"0", 16)
            if size == 0:
                self.ended = True  # the last chunk: deliver what came before it
                return
            if len(rest) < size + 2:
                return
            self.body += rest[:size]
            self.buf = rest[size + 2 :]

    def messages(self, stop: threading.Event | None) -> Iterator[dict[str, Any] | None]:
        """Decoded messages as they come; None after each quiet second."""
        dec = json.JSONDecoder()
        while stop is None or not stop.is_set():
            self._dechunk()
            text = self.body.lstrip()
            while text:
                try:
                    obj, end = dec.raw_decode(text.decode())
                except ValueError:
                    break  # an incomplete message: read more
                consumed = len(text.decode()[:end].encode())
                text = text[consumed:].lstrip()
                self.body = text
                yield obj
            self.body = text
            if self.ended:
                raise ConnectionResetError("etcd ended the watch stream")
            if not self._recv(wait=True):
                yield None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Lease:
    """One lease kept alive by a daemon thread (a keepalive every TTL/3).

    ``start()`` grants it (raises Unavailable when etcd is down). While etcd cannot
    be reached the thread keeps trying every second — etcd does not expire leases
    while it has no leader. When etcd says the lease is gone (TTL 0: we were away
    longer than the TTL), ``expired`` is set, ``on_expired(self)`` runs in the
    thread, and the thread ends: the owner grants a new lease (a new epoch).
    ``revoke()`` stops the thread and revokes (its keys go at once); ``stop()``
    only stops the thread (the lease then lapses after its TTL).
    """

    def __init__(
        self,
        store: EtcdStore,
        ttl: int,
        on_expired: Callable[[Lease], None] | None = None,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.on_expired = on_expired
        self.id = 0
        self.expired = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Lease:
        self.id, self.ttl = self.store.lease_grant(self.ttl)
        self._thread = threading.Thread(target=self._run, name="kanal-lease", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        period = max(self.ttl / 3.0, 0.5)
        while not self._stop.wait(period):
            try:
                ttl = self.store.lease_keepalive(self.id, timeout=period)
            except Unavailable:
                period = 1.0
                continue
            if ttl <= 0:
                self.expired.set()
                if self.on_expired is not None:
                    self.on_expired(self)
                return
            period = max(self.ttl / 3.0, 0.5)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def revoke(self) -> bool:
        self.stop()
        return self.store.lease_revoke(self.id) if self.id else False
