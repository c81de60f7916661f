"""The in-memory store: the null backend, for tests and throw-away engines."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from kanal.store import Delete, Entry, Put, StoreConflict, check_key


class MemoryStore:
    def __init__(self) -> None:
        self._data: dict[str, Entry] = {}
        self._rev = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Entry | None:
        with self._lock:
            return self._data.get(key)

    def list(self, prefix: str) -> list[Entry]:
        with self._lock:
            return [e for k, e in sorted(self._data.items()) if k.startswith(prefix)]

    def any(self, prefix: str) -> bool:
        with self._lock:
            return any(k.startswith(prefix) for k in self._data)

    def put(self, key: str, value: bytes, *, expect: int | None = None) -> int:
        return self.txn([Put(key, value, expect)])

    def delete(self, key: str, *, expect: int | None = None) -> bool:
        with self._lock:
            existed = key in self._data
            self._txn([Delete(key, expect)])
            return existed

    def txn(self, ops: Sequence[Put | Delete]) -> int:
        with self._lock:
            return self._txn(ops)

    def _txn(self, ops: Sequence[Put | Delete]) -> int:
        for op in ops:
            check_key(op.key)
            _check(op.key, op.expect, self._data.get(op.key))
        self._rev += 1
        for op in ops:
            if isinstance(op, Put):
                self._data[op.key] = Entry(op.key, bytes(op.value), self._rev)
            else:
                self._data.pop(op.key, None)
        return self._rev

    def revision(self) -> int:
        with self._lock:
            return self._rev

    def close(self) -> None:
        pass


def _check(key: str, expect: int | None, have: Entry | None) -> None:
    if expect is None:
        return
    rev = have.mod_rev if have else 0
    if rev != expect:
        what = "exists" if have and expect == 0 else f"is at revision {rev}, not {expect}"
        raise StoreConflict(f"store key {key!r} {what}")
