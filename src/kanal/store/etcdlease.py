"""A lease kept alive by a thread: what makes a host's cluster records go with it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from kanal.errors import Unavailable

if TYPE_CHECKING:
    from kanal.store.etcd import EtcdStore

__all__ = ["Lease"]


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
