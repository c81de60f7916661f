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
one etcd.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Sequence
from typing import Any

from kanal.errors import InvalidConfig, Unavailable
from kanal.store import Delete, Entry, Put, StoreConflict, check_key

__all__ = ["EtcdStore", "parse_etcd_url"]


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


class EtcdStore:
    def __init__(
        self, endpoints: Sequence[tuple[str, int]], prefix: str = "/kanal/", timeout: float = 5.0
    ) -> None:
        if not endpoints:
            raise InvalidConfig("no etcd endpoints")
        self.endpoints = list(endpoints)
        self.prefix = prefix
        self.timeout = timeout
        self._local = threading.local()
        self._preferred = 0

    # --- transport ---------------------------------------------------------------

    def _conn(self, i: int) -> http.client.HTTPConnection:
        conns: dict[int, http.client.HTTPConnection] = self._local.__dict__.setdefault("c", {})
        c = conns.get(i)
        if c is None:
            host, port = self.endpoints[i]
            c = conns[i] = http.client.HTTPConnection(host, port, timeout=self.timeout)
        return c

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST one gateway request, failing over between endpoints. Raises Unavailable."""
        data = json.dumps(body).encode()
        last: Exception | None = None
        n = len(self.endpoints)
        for k in range(n):
            i = (self._preferred + k) % n
            c = self._conn(i)
            try:
                c.request(
                    "POST",
                    path,
                    body=data,
                    headers={"Content-Type": "application/json", "Grpc-Metadata-hasleader": "true"},
                )
                resp = c.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException) as e:
                c.close()
                self._local.__dict__.get("c", {}).pop(i, None)
                last = e
                continue
            out: dict[str, Any] = json.loads(raw) if raw.strip() else {}
            if resp.status != 200:
                msg = out.get("error") or out.get("message") or raw.decode(errors="replace")
                if resp.status in (503, 504) or "leader" in str(msg):
                    last = Unavailable(
                        f"etcd {self.endpoints[i][0]}:{self.endpoints[i][1]}", str(msg)
                    )
                    continue
                raise Unavailable(f"etcd refused {path}", str(msg))
            self._preferred = i
            return out
        raise Unavailable("no etcd endpoint answered", str(last))

    def _k(self, key: str) -> bytes:
        return (self.prefix + check_key(key)).encode()

    def _entry(self, kv: dict[str, Any]) -> Entry:
        key = _unb64(kv["key"]).decode()[len(self.prefix) :]
        return Entry(key, _unb64(kv.get("value", "")), int(kv.get("mod_revision", 0)))

    # --- the contract ------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        out = self.call("/v3/kv/range", {"key": _b64(self._k(key))})
        kvs = out.get("kvs") or []
        return self._entry(kvs[0]) if kvs else None

    def list(self, prefix: str) -> list[Entry]:
        start = (self.prefix + prefix).encode()
        out = self.call(
            "/v3/kv/range",
            {"key": _b64(start), "range_end": _b64(_prefix_end(start)), "sort_target": "KEY"},
        )
        return [self._entry(kv) for kv in out.get("kvs") or []]

    def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        if expect is None:
            out = self.call("/v3/kv/put", {"key": _b64(self._k(key)), "value": _b64(value)})
            return int(out["header"]["revision"])
        return self.txn([Put(key, value, expect)])

    def delete(self, key: str, *, expect: int | None = None) -> bool:
        if expect is None:
            out = self.call("/v3/kv/deleterange", {"key": _b64(self._k(key))})
            return int(out.get("deleted", 0)) > 0
        out = self._txn([Delete(key, expect)])
        resp = (out.get("responses") or [{}])[0].get("response_delete_range") or {}
        return int(resp.get("deleted", 0)) > 0

    def txn(self, ops: Sequence[Put | Delete]) -> int:
        out = self._txn(ops)
        return int(out["header"]["revision"])

    def _txn(self, ops: Sequence[Put | Delete]) -> dict[str, Any]:
        compare = []
        success = []
        for op in ops:
            k = _b64(self._k(op.key))
            if op.expect is not None:
                compare.append(
                    {"key": k, "target": "MOD", "result": "EQUAL", "mod_revision": str(op.expect)}
                )
            if isinstance(op, Put):
                success.append({"request_put": {"key": k, "value": _b64(op.value)}})
            else:
                success.append({"request_delete_range": {"key": k}})
        out = self.call("/v3/kv/txn", {"compare": compare, "success": success, "failure": []})
        if not out.get("succeeded", False):
            for op in ops:  # name the first key whose condition failed
                if op.expect is None:
                    continue
                have = self.get(op.key)
                rev = have.mod_rev if have else 0
                if rev != op.expect:
                    what = "exists" if have and op.expect == 0 else f"is at revision {rev}"
                    raise StoreConflict(f"store key {op.key!r} {what}")
            raise StoreConflict("store transaction lost a race; retry")
        return out

    def revision(self) -> int:
        out = self.call(
            "/v3/kv/range", {"key": _b64(self._k("revision-probe")), "count_only": True}
        )
        return int(out["header"]["revision"])

    def close(self) -> None:
        for c in self._local.__dict__.get("c", {}).values():
            c.close()
