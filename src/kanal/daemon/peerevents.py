"""Overlay peers joining and leaving the cluster, as ``node`` events on ``GET /events``.

A watch of its own on the cluster's ``nodes/`` prefix (a host's key lives under its
lease: it appears when the host registers, and goes when the host deregisters or
its lease expires). The hosts known at the start are the baseline; after that each
host that appears is told as ``join`` and each that goes as ``leave`` (this host
itself never). A break in the watch is resumed from the last revision; a compacted
one is caught up by comparing listings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from kanal.cluster.nodes import NODES_PREFIX, Node
from kanal.errors import DecodeError, Unavailable

if TYPE_CHECKING:
    from kanal.engine.cluster import Cluster
    from kanal.store import Entry
    from kanal.store.etcd import WatchBatch

__all__ = ["changes", "node_event", "watch_peers"]


def node_event(action: str, name: str, addr: str) -> dict[str, Any]:
    """A host joined or left (docker's node events have Type ``node`` too)."""
    return {
        "Type": "node",
        "Action": action,
        "Actor": {"ID": name, "Attributes": {"name": name, "addr": addr}},
    }


def _addr(value: bytes) -> str:
    try:
        return Node.from_json(value).advertise_addr
    except DecodeError:
        return ""


def _listing(entries: Iterable[Entry]) -> dict[str, str]:
    return {e.key[len(NODES_PREFIX) :]: _addr(e.value) for e in entries}


def changes(known: dict[str, str], batch: WatchBatch) -> list[tuple[str, str, str]]:
    """(action, host, addr) of one watch batch, ``known`` (host → address) updated."""
    out = []
    if batch.resync is not None:
        now = _listing(batch.resync)
        out += [("leave", n, a) for n, a in sorted(known.items()) if n not in now]
        out += [("join", n, a) for n, a in sorted(now.items()) if n not in known]
        known.clear()
        known.update(now)
        return out
    for ev in batch.events:
        name = ev.key[len(NODES_PREFIX) :]
        if ev.type == "delete":
            if name in known:
                out.append(("leave", name, known.pop(name)))
        elif name not in known:
            known[name] = _addr(ev.value)
            out.append(("join", name, known[name]))
    return out


def watch_peers(
    cluster: Cluster, publish: Callable[[dict[str, Any]], None], stop: threading.Event
) -> threading.Thread:
    """Start the watch (a daemon thread); ``publish`` gets each node event."""

    def run() -> None:
        known: dict[str, str] | None = None
        rev = 0
        while not stop.is_set():
            try:
                entries, at = cluster.store.snapshot(NODES_PREFIX)
            except Unavailable:
                stop.wait(1.0)
                continue
            if known is None:
                known, rev = _listing(entries), at
            for batch in cluster.store.watch(NODES_PREFIX, rev + 1, stop=stop):
                rev = batch.revision
                for action, name, addr in changes(known, batch):
                    if name != cluster.node:
                        publish(node_event(action, name, addr))

    t = threading.Thread(target=run, name="kanal-peer-events", daemon=True)
    t.start()
    return t
