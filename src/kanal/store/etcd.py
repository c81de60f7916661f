"""The etcd store: the same contract over etcd v3's JSON gateway (``/v3/...``).

No client library: etcd (≥ 3.4) serves its gRPC API as JSON over HTTP, with
base64 keys and values and int64s as strings. Revisions are etcd's own (its
``mod_revision`` is our ``mod_rev``), conditions are txn compares on
``mod_revision`` (an absent key has 0, which is what ``expect=0`` needs), so the
store behaves the same on one host and across hosts. Several endpoints can be
given; a request that cannot reach one tries the next. Requests carry
``Grpc-Metadata-hasleader: true`` so a member cut off from the cluster refuses
instead of answering from stale state.

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

The parts: :mod:`.etcdwire` (the request client with its failover),
:mod:`.etcdwatch` (the watch stream and its decoder), :mod:`.etcdlease` (the
lease thread), and here the Store adapter and the transaction types.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kanal.errors import InvalidConfig, Unavailable
from kanal.store import Delete, Entry, Put, StoreConflict
from kanal.store.etcdconn import Connector, EtcdSettings
from kanal.store.etcdlease import Lease
from kanal.store.etcdwatch import WatchBatch, WatchEvent, watch
from kanal.store.etcdwire import EtcdClient, LeaseNotFound, b64, parse_etcd_url, prefix_end

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


class EtcdStore(EtcdClient):
    """The :class:`~kanal.store.Store` contract, and the cluster layer's extras, over
    the wire client (see the module docstring)."""

    # --- the contract ------------------------------------------------------------

    def get(self, key: str, *, timeout: float | None = None) -> Entry | None:
        out = self.call("/v3/kv/range", {"key": b64(self._k(key))}, timeout=timeout)
        kvs = out.get("kvs") or []
        return self.entry(kvs[0]) if kvs else None

    def list(self, prefix: str, *, timeout: float | None = None) -> list[Entry]:
        return self.snapshot(prefix, timeout=timeout)[0]

    def any(self, prefix: str, *, timeout: float | None = None) -> bool:
        start = (self.prefix + prefix).encode()
        out = self.call(
            "/v3/kv/range",
            {
                "key": b64(start),
                "range_end": b64(prefix_end(start)),
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
            {"key": b64(start), "range_end": b64(prefix_end(start)), "sort_target": "KEY"},
            timeout=timeout,
        )
        entries = [self.entry(kv) for kv in out.get("kvs") or []]
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
            body: dict[str, Any] = {"key": b64(self._k(key)), "value": b64(value)}
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
            out = self.call("/v3/kv/deleterange", {"key": b64(self._k(key))}, timeout=timeout)
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
        out = self.call("/v3/kv/range", {"key": b64(self._k("revision-probe")), "count_only": True})
        return int(out["header"]["revision"])

    # --- transactions with any compare ----------------------------------------------

    def _cmp(self, c: Cmp) -> dict[str, Any]:
        ops = {"==": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS", ">": "GREATER"}
        if c.op not in ops:
            raise InvalidConfig(f"invalid compare operator {c.op!r}")
        out: dict[str, Any] = {"key": b64(self._k(c.key)), "result": ops[c.op]}
        if c.target == "value":
            if not isinstance(c.value, bytes):
                raise InvalidConfig("a value compare needs bytes")
            out.update(target="VALUE", value=b64(c.value))
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
        k = b64(self._k(op.key))
        if isinstance(op, Put):
            return {"request_put": {"key": k, "value": b64(op.value)}}
        if isinstance(op, LeasePut):
            return {"request_put": {"key": k, "value": b64(op.value), "lease": str(op.lease)}}
        if isinstance(op, Delete):
            return {"request_delete_range": {"key": k}}
        rng: dict[str, Any] = {"key": k}
        if op.prefix:
            rng["range_end"] = b64(prefix_end(self._k(op.key)))
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
                gets.append([self.entry(kv) for kv in r["response_range"].get("kvs") or []])
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
        """Every change under ``prefix`` from ``start_revision`` on, as batches, forever
        (:func:`kanal.store.etcdwatch.watch`)."""
        return watch(
            self, prefix, start_revision, stop=stop, idle_probe=idle_probe, on_error=on_error
        )
