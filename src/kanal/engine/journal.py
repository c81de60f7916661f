"""The engine's intent journal: a multi-step operation is written down before its
first side effect, and struck off in the same store transaction as its last write.

An intent is ``intents/<id>`` → ``{"op": ..., "started": <unix time>, **fields}``.
While the operation runs its id is *in flight* (in memory). An intent that is in
the store but not in flight was abandoned: the daemon died midway (kill -9, power
cut), or the operation's own rollback could not strike it off. kanald resolves
every abandoned intent at start, and again in its periodic reconcile, with the
recovery registered for its ``op`` (:mod:`kanal.engine.recovery`): each one
finishes the operation or undoes it, idempotently, so running it twice — or on an
operation that did complete — leaves the same state. See docs/crash-safety.md.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kanal.engine.model import new_id
from kanal.store import Delete, Put, Store

__all__ = ["Intent", "Journal"]

PREFIX = "intents/"
_OBJECT_FIELDS = ("sandbox", "endpoint", "network")


@dataclass
class Intent:
    """One operation in progress: what recovery needs to finish or undo it."""

    id: str
    op: str
    fields: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    done: bool = False  # struck off (in this process)

    @property
    def key(self) -> str:
        return PREFIX + self.id

    def to_json(self) -> bytes:
        return json.dumps({"op": self.op, "started": self.started, **self.fields}).encode()

    @classmethod
    def from_json(cls, key: str, raw: bytes) -> Intent:
        d = json.loads(raw)
        op = str(d.pop("op", ""))
        started = float(d.pop("started", 0.0))
        return cls(key.removeprefix(PREFIX), op, d, started)

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]


class Journal:
    """Intents on the state store, and which of them this process is running."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._inflight: dict[str, Intent] = {}
        self._lock = threading.Lock()

    def begin(self, op: str, *, with_ops: Sequence[Put | Delete] = (), **fields: Any) -> Intent:
        """Record the intent (atomically with ``with_ops``, e.g. a name reservation).

        Raises StoreConflict (from a conditional op in ``with_ops``): nothing written.
        """
        it = Intent(new_id()[:32], op, dict(fields), time.time())
        with self._lock:
            self._inflight[it.id] = it
        try:
            self.store.txn([Put(it.key, it.to_json(), 0), *with_ops])
        except BaseException:
            with self._lock:
                self._inflight.pop(it.id, None)
            raise
        return it

    def update(self, it: Intent, **fields: Any) -> None:
        """Add what recovery must know from here on (an address a plugin gave, say)."""
        it.fields.update(fields)
        self.store.put(it.key, it.to_json())

    def end(self, it: Intent, with_ops: Sequence[Put | Delete] = ()) -> None:
        """Strike the intent off, in one transaction with the operation's last writes."""
        if it.done:
            if with_ops:
                self.store.txn(list(with_ops))
            return
        self.store.txn([Delete(it.key), *with_ops])
        it.done = True
        with self._lock:
            self._inflight.pop(it.id, None)

    @contextmanager
    def intent(
        self, op: str, *, with_ops: Sequence[Put | Delete] = (), **fields: Any
    ) -> Iterator[Intent]:
        """``begin`` … ``end``: the body ends it with its last writes (``end(it, ops)``);
        if the body raises (after its own rollback), the intent is struck off alone.
        If even that fails the intent stays, abandoned, for recovery."""
        it = self.begin(op, with_ops=with_ops, **fields)
        try:
            yield it
        except BaseException:
            try:
                self.end(it)
            finally:
                with self._lock:
                    self._inflight.pop(it.id, None)
            raise
        if not it.done:
            self.end(it)

    def open(self) -> list[Intent]:
        """Every intent in the store (in flight here or not), oldest first."""
        out = [Intent.from_json(e.key, e.value) for e in self.store.list(PREFIX)]
        return sorted(out, key=lambda i: i.started)

    def in_flight_objects(self) -> set[str]:
        """Ids (sandbox, endpoint, network) that running operations are working on."""
        with self._lock:
            its = list(self._inflight.values())
        return {str(v) for it in its for k, v in it.fields.items() if k in _OBJECT_FIELDS}

    def abandoned(self) -> list[Intent]:
        """Intents no operation of this process is running.

        The store is listed before the running set is taken: an intent is running
        before it is written (``begin``) and written off before it stops running
        (``end``), so one listed but not running either is abandoned or ended in
        between — read again, it is gone then. (Taking the running set first
        called an operation begun during the listing abandoned: recovery then
        "finished" a remove that was still running.)
        """
        listed = self.open()
        with self._lock:
            running = set(self._inflight)
        return [i for i in listed if i.id not in running and self.store.get(i.key) is not None]

    def forget(self, it: Intent) -> None:
        """Strike off an abandoned intent once recovery resolved it."""
        self.store.delete(it.key)
