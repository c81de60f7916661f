"""``GET /events``: the engine's events fanned out to every stream that listens."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from kanal.daemon.shapes import endpoint_event
from kanal.engine.model import Endpoint, Network

__all__ = ["EventBus"]


class EventBus:
    """Fan-out of engine events to ``GET /events`` streams (bounded, lossy per client)."""

    def __init__(self) -> None:
        self._subs: list[queue.Queue[dict[str, Any]]] = []
        self._lock = threading.Lock()

    def publish(self, event: dict[str, Any]) -> None:
        now = time.time_ns()
        event.setdefault("time", now // 1_000_000_000)
        event.setdefault("timeNano", now)  # docker's fields, read by its CLI
        event.setdefault("scope", "local")
        with self._lock:
            subs = list(self._subs)
        for q in subs:
            try:
                q.put_nowait(event)
            except queue.Full:
                pass  # a client that does not read loses events, not the daemon

    def subscribe(self) -> queue.Queue[dict[str, Any]]:
        q: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1000)
        with self._lock:
            self._subs.append(q)
        return q

    def unsubscribe(self, q: queue.Queue[dict[str, Any]]) -> None:
        with self._lock:
            if q in self._subs:
                self._subs.remove(q)

    def controller_listener(self, event: str, net: Network, ep: Endpoint) -> None:
        """The controller's listener: connect and disconnect as network events."""
        self.publish(endpoint_event(event, net, ep))
