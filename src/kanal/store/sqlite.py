"""The SQLite store: one file, one table, a store-wide revision like etcd's.

WAL journal: readers never block the writer, and a process killed mid-write
leaves the last committed transaction (the journal is rolled back on open).
``synchronous=NORMAL`` in WAL mode survives a process crash; a power cut may
lose the last commits but never corrupts the file.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence

from kanal.errors import Unavailable
from kanal.store import Delete, Entry, Put, StoreConflict, check_key

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, mod_rev INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0);
"""


class SqliteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            if path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
                # The state names every container: root-only, like the rest of kanal's state.
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                os.close(fd)
            # One connection shared under a lock: writes are serialized anyway, and a
            # single connection keeps the revision counter consistent without retries.
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise Unavailable(f"cannot open the state database {path!r}", str(e)) from e
        self._lock = threading.Lock()

    def get(self, key: str) -> Entry | None:
        with self._lock:
            row = self._db.execute("SELECT value, mod_rev FROM kv WHERE key = ?", (key,)).fetchone()
        return Entry(key, bytes(row[0]), row[1]) if row else None

    def list(self, prefix: str) -> list[Entry]:
        # A range scan on the primary key: [prefix, prefix + U+10FFFF).
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value, mod_rev FROM kv WHERE key >= ? AND key < ? ORDER BY key",
                (prefix, prefix + "\U0010ffff"),
            ).fetchall()
        return [Entry(k, bytes(v), r) for k, v, r in rows]

    def any(self, prefix: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM kv WHERE key >= ? AND key < ? LIMIT 1",
                (prefix, prefix + "\U0010ffff"),
            ).fetchone()
        return row is not None

    def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        return self.txn([Put(key, value, expect)])

    def delete(self, key: str, *, expect: int | None = None) -> bool:
        with self._lock:
            existed = self._rev_of(key) != 0
            self._txn([Delete(key, expect)])
            return existed

    def txn(self, ops: Sequence[Put | Delete]) -> int:
        with self._lock:
            return self._txn(ops)

    def _rev_of(self, key: str) -> int:
        row = self._db.execute("SELECT mod_rev FROM kv WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _txn(self, ops: Sequence[Put | Delete]) -> int:
        for op in ops:
            check_key(op.key)
        db = self._db
        try:
            # IMMEDIATE: take the write lock before reading, so another process
            # sharing the file cannot interleave between check and write.
            db.execute("BEGIN IMMEDIATE")
            try:
                for op in ops:
                    if op.expect is not None:
                        rev = self._rev_of(op.key)
                        if rev != op.expect:
                            what = "exists" if rev and op.expect == 0 else f"is at revision {rev}"
                            raise StoreConflict(f"store key {op.key!r} {what}")
                (rev,) = db.execute(
                    "UPDATE meta SET value = value + 1 WHERE name = 'revision' RETURNING value"
                ).fetchone()
                for op in ops:
                    if isinstance(op, Put):
                        db.execute(
                            "INSERT INTO kv VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE "
                            "SET value = excluded.value, mod_rev = excluded.mod_rev",
                            (op.key, bytes(op.value), rev),
                        )
                    else:
                        db.execute("DELETE FROM kv WHERE key = ?", (op.key,))
                db.execute("COMMIT")
                return int(rev)
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise Unavailable("state database write failed", str(e)) from e

    def revision(self) -> int:
        with self._lock:
            (rev,) = self._db.execute("SELECT value FROM meta WHERE name = 'revision'").fetchone()
        return int(rev)

    def close(self) -> None:
        with self._lock:
            self._db.close()
