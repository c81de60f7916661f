"""``GET /events``: the engine's events fanned out to every stream that listens.

As docker's ``GET /events``: ``filters`` (``type``, ``event``, ``network``,
``container``, ``node``, ``scope``; values of one key OR'ed, keys AND'ed), ``since``
and ``until`` (Unix time, seconds with an optional fraction). The bus keeps the last
:data:`HISTORY` events, so a stream asked ``since`` a past time starts with those;
with ``until`` the stream ends at that time (at once when it is past).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kanal.daemon.shapes import endpoint_event
from kanal.engine.model import Endpoint, Network
from kanal.errors import InvalidConfig

__all__ = ["HISTORY", "EventBus", "EventFilter"]

#: events kept for streams that ask ``since`` a past time
HISTORY = 1000
FILTER_KEYS = ("type", "event", "network", "container", "scope", "node")


@dataclass(frozen=True)
class EventFilter:
    """Which events a stream wants (docker's events filters, since, until)."""

    filters: Mapping[str, Sequence[str]] = field(default_factory=dict)
    since: int | None = None  # nanoseconds
    until: int | None = None  # nanoseconds

    @classmethod
    def parse(
        cls, filters: Mapping[str, Sequence[str]], since: str = "", until: str = ""
    ) -> EventFilter:
        """Raises InvalidConfig: an unknown filter key, a malformed time."""
        for key in filters:
            if key not in FILTER_KEYS:
                raise InvalidConfig(f"invalid filter {key!r}")
        return cls(dict(filters), _nanos(since, "since"), _nanos(until, "until"))

    def match(self, ev: Mapping[str, Any]) -> bool:
        t = int(ev.get("timeNano", 0))
        if (self.since is not None and t < self.since) or (
            self.until is not None and t > self.until
        ):
            return False
        actor = ev.get("Actor") or {}
        ident = str(actor.get("ID", ""))
        name = str((actor.get("Attributes") or {}).get("name", ""))
        kind = str(ev.get("Type", ""))
        for key, values in self.filters.items():
            if not values:
                continue
            if key == "type":
                ok = kind in values
            elif key == "scope":
                ok = str(ev.get("scope", "local")) in values
            elif key == "event":
                action = str(ev.get("Action", ""))
                ok = action in values or action.split(":", 1)[0] in values
            else:  # network, container, node: the actor's id (or a prefix of it) or its name
                ok = kind == key and any(v in (ident, name) or ident.startswith(v) for v in values)
            if not ok:
                return False
        return True


def _nanos(value: str, what: str) -> int | None:
    """docker's wire form of a time: Unix seconds, optionally ``.fraction`` (up to ns)."""
    if not value:
        return None
    sec, _, frac = value.partition(".")
    if not sec.isdigit() or (frac and not frac.isdigit()) or len(frac) > 9 or len(sec) > 12:
        raise InvalidConfig(f"invalid {what} {value!r}: want Unix seconds[.fraction]")
    return int(sec) * 1_000_000_000 + int(frac.ljust(9, "0") if frac else 0)


class EventBus:
    """Fan-out of engine events to ``GET /events`` streams (bounded, lossy per client)."""

    def __init__(self) -> None:
        self._subs: list[queue.Queue[dict[str, Any]]] = []
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._lock = threading.Lock()

    def publish(self, event: dict[str, Any]) -> None:
        now = time.time_ns()
        event.setdefault("time", now // 1_000_000_000)
        event.setdefault("timeNano", now)  # docker's fields, read by its CLI
        event.setdefault("scope", "local")
        with self._lock:
            # history and subscribers in one step: a new stream gets each event once
            self._history.append(event)
            subs = list(self._subs)
        for q in subs:
            try:
                q.put_nowait(event)
            except queue.Full:
                pass  # a client that does not read loses events, not the daemon

    def subscribe(self) -> queue.Queue[dict[str, Any]]:
        return self.subscribe_since()[1]

    def subscribe_since(
        self, since: int | None = None
    ) -> tuple[list[dict[str, Any]], queue.Queue[dict[str, Any]]]:
        """The kept events at or after ``since`` (ns; None: none) and a queue of what
        comes next."""
        q: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1000)
        with self._lock:
            self._subs.append(q)
            past = [] if since is None else [e for e in self._history if e["timeNano"] >= since]
        return past, q

    def unsubscribe(self, q: queue.Queue[dict[str, Any]]) -> None:
        with self._lock:
            if q in self._subs:
                self._subs.remove(q)

    def controller_listener(self, event: str, net: Network, ep: Endpoint) -> None:
        """The controller's listener: connect and disconnect as network events."""
        self.publish(endpoint_event(event, net, ep))
