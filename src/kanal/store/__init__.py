"""The state store: a small key-value contract shared by the engine and the cluster.

Everything the network manager keeps (networks, endpoints, sandboxes, address
allocations) is JSON under ``/``-separated keys. The contract is the subset of
etcd v3 the engine needs, so the same code runs on one host (SQLite) and across
hosts (etcd):

- every write bumps one store-wide revision; each entry remembers the revision
  of its last write (``mod_rev``), like etcd's ``mod_revision``;
- writes can be conditional on those revisions (compare-and-swap), and several
  writes and checks commit atomically in one :meth:`Store.txn`.

Backends: ``sqlite`` (default, a file), ``etcd`` (shared by hosts), ``memory``
(tests, the null store). Open one with :func:`open_store`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kanal.errors import Conflict, InvalidConfig, Unavailable

__all__ = [
    "Delete",
    "Entry",
    "Put",
    "Store",
    "StoreConflict",
    "StoreRefused",
    "open_store",
]


@dataclass(frozen=True)
class Entry:
    key: str
    value: bytes
    mod_rev: int


@dataclass(frozen=True)
class Put:
    """Write ``value`` at ``key``; ``expect`` as in :meth:`Store.put`."""

    key: str
    value: bytes
    expect: int | None = None


@dataclass(frozen=True)
class Delete:
    """Remove ``key``; ``expect`` as in :meth:`Store.delete`."""

    key: str
    expect: int | None = None


class StoreConflict(Conflict):
    """A conditional write lost: the entry changed (or appeared) since it was read."""


class StoreRefused(Unavailable):
    """The store answered but refuses us: a TLS or authentication problem (an untrusted
    certificate, a refused client certificate, a wrong password, a user without
    permission). A configuration problem, not an outage: waiting does not fix it,
    new certificates or credentials do. Still an Unavailable, so every path that
    copes with an unreachable store copes with this one."""


class Store(Protocol):
    """A revisioned key-value store.

    Keys are non-empty strings without NUL; values are bytes. ``expect`` on a write
    is a condition: None = unconditional, 0 = the key must not exist, n > 0 = the
    key's ``mod_rev`` must be n. A failed condition raises :class:`StoreConflict`
    and changes nothing. Implementations are safe to share between threads.
    """

    def get(self, key: str) -> Entry | None:
        """The entry at ``key``, or None."""
        ...

    def list(self, prefix: str) -> list[Entry]:
        """Every entry whose key starts with ``prefix``, sorted by key."""
        ...

    def any(self, prefix: str) -> bool:
        """Whether some key starts with ``prefix`` (without reading them all)."""
        ...

    def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        """Write one entry; returns its new ``mod_rev``. Raises StoreConflict."""
        ...

    def delete(self, key: str, *, expect: int | None = None) -> bool:
        """Remove one entry; False if it was not there (and no condition failed).

        Raises StoreConflict when ``expect`` is given and does not hold (a missing
        key fails any ``expect`` other than None and 0).
        """
        ...

    def txn(self, ops: Sequence[Put | Delete]) -> int:
        """Apply every op atomically, all conditions checked first; returns the revision.

        A Delete of a missing key without condition is a no-op, not an error.
        Raises StoreConflict (naming the first failing key) and changes nothing.
        """
        ...

    def revision(self) -> int:
        """The store-wide revision (0 for an empty store)."""
        ...

    def close(self) -> None:
        """Release the backend; idempotent."""
        ...


def check_key(key: str) -> str:
    if not key or "\0" in key:
        raise InvalidConfig(f"invalid store key {key!r}")
    return key


def open_store(url: str) -> Store:
    """A store from a URL: ``sqlite:///path/to/db``, ``sqlite://:memory:``, ``memory://``,
    ``etcd://host:port[,host:port...][/prefix]`` (also ``etcds://``: TLS against the
    system's CAs; client certificates and users need ``opts``, see
    :func:`kanal.store.etcd.open_etcd`).

    Raises:
        InvalidConfig: an unknown scheme or a malformed URL.
        Unavailable: the backend cannot be opened.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise InvalidConfig(f"invalid store URL {url!r}: want scheme://...")
    if scheme == "memory":
        from kanal.store.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from kanal.store.sqlite import SqliteStore

        if not rest:
            raise InvalidConfig(f"invalid store URL {url!r}: no path")
        return SqliteStore(rest)
    if scheme in ("etcd", "etcds"):
        from kanal.store.etcd import open_etcd

        return open_etcd(url)
    raise InvalidConfig(f"unknown store backend {scheme!r} (known: sqlite, etcd, etcds, memory)")
