"""etcd's watch stream: ``/v3/watch`` as chunked, newline-separated JSON, decoded.

:class:`WatchStream` is one HTTP request and its messages; :func:`watch` is the
loop behind :meth:`kanal.store.etcd.EtcdStore.watch` (resume on another member,
resync after a compaction, probe an idle member).
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kanal.errors import Unavailable
from kanal.store import Entry, StoreRefused
from kanal.store.etcdconn import Connector, explain_tls_error
from kanal.store.etcdwire import b64, prefix_end, unb64

if TYPE_CHECKING:
    from kanal.store.etcd import EtcdStore

__all__ = ["WatchBatch", "WatchEvent", "WatchStream", "watch"]


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


def watch(
    store: EtcdStore,
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
    n = len(store.endpoints)
    i = store._preferred
    backoff = 0.1
    while stop is None or not stop.is_set():
        if n > 1:
            # On the leader when the members say which it is (see leader_index).
            lead = store.leader_index()
            if lead is not None:
                i = lead
        stream = WatchStream(
            store.connector, store.endpoints[i], store.attempt_timeout, store.timeout
        )
        probe = _Probe(store, i)
        try:
            stream.open(_watch_request(store, prefix, rev))
            last_data = time.monotonic()
            # Every host's watch saw the same last event: a quiet time drawn per watch
            # keeps them from probing the member all in the same second.
            quiet = idle_probe * (1 + random.random() / 2)
            for msg in stream.messages(stop):
                probe.check()
                if msg is None:  # a quiet second: is the member still there?
                    if time.monotonic() - last_data >= quiet:
                        probe.start()
                        last_data = time.monotonic()
                        quiet = idle_probe * (1 + random.random() / 2)
                    continue
                last_data = time.monotonic()
                backoff = 0.1
                if "error" in msg:
                    raise _watch_error(store, i, str(msg["error"]))
                res = msg.get("result") or {}
                if int(res.get("compact_revision", 0) or 0):
                    entries, at = store.snapshot(prefix)
                    rev = at + 1
                    yield WatchBatch(at, [], resync=entries)
                    break  # re-create the watch from the listing
                if res.get("canceled"):
                    raise _watch_error(store, i, str(res.get("cancel_reason") or res))
                events = [_event(store, e) for e in res.get("events") or []]
                hdr = int((res.get("header") or {}).get("revision", 0) or 0)
                if events:
                    rev = max(events[-1].mod_rev, hdr) + 1
                    yield WatchBatch(rev - 1, events)
                elif hdr and not res.get("created"):
                    rev = max(rev, hdr + 1)  # a progress notification
        except (OSError, ValueError, http.client.HTTPException, Unavailable) as e:
            if on_error is not None:
                on_error(_as_unavailable(store, i, e))
            # Resume where requests last succeeded (a member cut off from the others,
            # which would only time out, is not it), or else on the next member.
            i = store._preferred if store._preferred != i else (i + 1) % n
            if stop is not None:
                if stop.wait(backoff):
                    return
            else:
                time.sleep(backoff)
            backoff = min(backoff * 2, 1.0)
        finally:
            stream.close()


class _Probe:
    """Asks an idle watch's member whether it is still there, on a thread of its own.

    Why not in the watch's thread: the answer takes a round trip (seconds on a lossy
    underlay), and an event that arrives meanwhile would wait for it; the watch keeps
    reading, and :meth:`check` raises the probe's failure at its next message."""

    def __init__(self, store: EtcdStore, i: int) -> None:
        self.store, self.i = store, i
        self.running = False
        self.failed: Exception | None = None

    def start(self) -> None:
        if self.running:
            return
        self.running = True
        threading.Thread(target=self._run, name="etcd-watch-probe", daemon=True).start()

    def _run(self) -> None:
        try:
            self.store.probe(self.i)
        except (OSError, ValueError, http.client.HTTPException, Unavailable) as e:
            self.failed = e
        finally:
            self.running = False

    def check(self) -> None:
        if self.failed is not None:
            raise self.failed


def _watch_request(store: EtcdStore, prefix: str, rev: int) -> dict[str, Any]:
    start = (store.prefix + prefix).encode()
    return {
        "create_request": {
            "key": b64(start),
            "range_end": b64(prefix_end(start)),
            "start_revision": str(rev),
            "prev_kv": True,
            "progress_notify": True,
        }
    }


def _as_unavailable(store: EtcdStore, i: int, e: Exception) -> Unavailable:
    if isinstance(e, Unavailable):
        return e
    if isinstance(e, ssl.SSLError):
        why = explain_tls_error(e, store.connector.settings, store._where(i))
        if why is not None:
            return StoreRefused(why)
    return Unavailable("etcd watch", str(e))


def _watch_error(store: EtcdStore, i: int, msg: str) -> Unavailable:
    """What a watch stream's error or cancellation means; forgets a refused token."""
    if "auth token" in msg:
        store.connector.forget_token(store.endpoints[i])  # the next stream authenticates
        return Unavailable("etcd watch: token expired", msg)
    if "permission denied" in msg:
        user = store.connector.settings.username or "(none)"
        return StoreRefused(f"etcd user {user!r} may not watch under {store.prefix}", msg)
    return Unavailable("etcd watch ended", msg)


def _event(store: EtcdStore, e: dict[str, Any]) -> WatchEvent:
    kv = e.get("kv") or {}
    prev = e.get("prev_kv")
    return WatchEvent(
        type="delete" if e.get("type") == "DELETE" else "put",
        key=unb64(kv["key"]).decode()[len(store.prefix) :],
        value=unb64(kv.get("value", "")),
        mod_rev=int(kv.get("mod_revision", 0)),
        lease=int(kv.get("lease", 0) or 0),
        prev=store.entry(prev) if prev else None,
    )


class WatchStream:
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
