"""The overlay agent's watch loops and what it counts for kanald's metrics.

:class:`WatchLoops` is mixed into :class:`~kanal.cluster.agent.OverlayAgent` (which
owns the state declared here): list a prefix, program it, then follow its watch,
programming each batch as it comes. :class:`AgentStats` holds plain numbers the
loops and the agent bump (one writer each; a scrape reads them from another thread,
never a torn value): etcd errors, reconciles, the kernel entries a reconcile found
wrong and repaired (drift), and how long a watch batch took from its arrival to the
kernel (the programming latency, without etcd's delivery).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from kanal.cluster.nodes import NODES_PREFIX
from kanal.errors import Unavailable
from kanal.store import Entry
from kanal.store.etcd import EtcdStore, WatchBatch

__all__ = ["OVERLAY_PREFIX", "PROGRAM_BUCKETS", "AgentStats", "WatchLoops"]

#: upper bounds (seconds) of the programming latency histogram's buckets
PROGRAM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
OVERLAY_PREFIX = "overlay/"  # the overlay's endpoint records (kanal.cluster.agent)
log = logging.getLogger("kanal.cluster")


@dataclass
class AgentStats:
    etcd_errors: int = 0  # each followed by a retry (a watch on the next member)
    reconciles: int = 0
    drift_repairs: int = 0  # kernel entries a full programming had to change
    batches: int = 0  # watch batches programmed
    program_seconds: float = 0.0
    program_buckets: list[int] = field(default_factory=lambda: [0] * (len(PROGRAM_BUCKETS) + 1))

    def programmed(self, seconds: float) -> None:
        self.batches += 1
        self.program_seconds += seconds
        i = 0
        while i < len(PROGRAM_BUCKETS) and seconds > PROGRAM_BUCKETS[i]:
            i += 1
        self.program_buckets[i] += 1


class WatchLoops:
    """Mixed into the overlay agent (``_program``, ``_notify``, ``_take`` are its)."""

    store: EtcdStore
    stats: AgentStats
    last_error: Exception | None
    synced: threading.Event
    _stop: threading.Event
    _listed: set[str]

    def _program(self, networks: Iterable[str], *, mode: str = "full") -> None:
        raise NotImplementedError  # the agent's

    def _notify(self) -> None:
        raise NotImplementedError  # the agent's

    def _take(self, prefix: str, rev: int, update: Callable[[], set[str]]) -> set[str]:
        raise NotImplementedError  # the agent's

    def _error(self, e: Exception) -> None:
        self.stats.etcd_errors += 1
        if self.last_error is None:
            log.warning("overlay agent: etcd: %s", e)
        self.last_error = e

    def _watch_loop(
        self,
        prefix: str,
        set_all: Callable[[Iterable[Entry]], set[str]],
        on_batch: Callable[[WatchBatch], set[str]],
    ) -> None:
        while not self._stop.is_set():
            try:
                entries, rev = self.store.snapshot(prefix)
            except Unavailable as e:
                self._error(e)
                self._stop.wait(1.0)
                continue
            self._program(self._take(prefix, rev, partial(set_all, entries)))
            self._notify()
            self._listed.add(prefix)
            if self._listed >= {NODES_PREFIX, OVERLAY_PREFIX}:
                self.synced.set()
            self.last_error = None
            for batch in self.store.watch(prefix, rev + 1, stop=self._stop, on_error=self._error):
                self.last_error = None
                start = time.monotonic()
                if batch.resync is not None:
                    nets = self._take(prefix, batch.revision, partial(set_all, batch.resync))
                    self._program(nets)
                else:
                    nets = self._take(prefix, batch.revision, partial(on_batch, batch))
                    # endpoints changed: their own entries; hosts changed: every network
                    mode = "delta" if prefix == OVERLAY_PREFIX else "recompute"
                    self._program(nets, mode=mode)
                self.stats.programmed(time.monotonic() - start)
                self._notify()
