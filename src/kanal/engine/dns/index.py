"""The embedded DNS's view: which names and aliases each sandbox can resolve.

Built from the controller's endpoints on user-defined networks (and, for
overlay networks, from the names other hosts published through the cluster
agent), then kept until :meth:`NameIndex.invalidate`. It is built *outside* its
lock: building reads the controller and the overlay agent, whose listeners call
``invalidate()`` with the agent's lock held — building under ours deadlocked
the DNS thread against the agent's resync. An index built while an invalidate
came in is used once and not kept.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kanal.engine.controller import Controller

__all__ = ["NameIndex"]

_Index = tuple[
    dict[str, set[str]],  # sandbox id -> its user networks
    dict[tuple[str, str], list[str]],  # (network, name or alias) -> addresses
    dict[tuple[str, str], str],  # (network, address) -> "name.network"
    dict[tuple[str, str], list[str]],  # (sandbox id, link alias) -> addresses
]


class NameIndex:
    """Forward and reverse lookups for embedded DNS (thread-safe)."""

    def __init__(self, ctrl: Controller) -> None:
        self.ctrl = ctrl
        self._lock = threading.Lock()
        self._index: _Index | None = None
        self._gen = 0  # bumped by invalidate(): an index built before is stale

    def _current(self) -> _Index:
        with self._lock:
            index, gen = self._index, self._gen
        if index is None:
            index = self._build()
            with self._lock:
                if self._gen == gen:  # not invalidated while it was built
                    self._index = index
        return index

    def lookup(self, sandbox_id: str, qname: str) -> list[str] | None:
        """Addresses of ``qname`` (a sandbox name or alias) on the user networks
        ``sandbox_id`` is on; None when no such name is there."""
        nets, names, _rev, links = self._current()
        linked = links.get((sandbox_id, qname.lower()))
        if linked is not None:  # docker's --link alias: this sandbox's own name
            return list(linked)
        found: list[str] = []
        hit = False
        for nid in nets.get(sandbox_id, ()):
            addrs = names.get((nid, qname))
            if addrs is not None:
                hit = True
                found.extend(addrs)
        return found if hit else None

    def reverse(self, sandbox_id: str, ip: str) -> str | None:
        """PTR: ``name.network`` of the sandbox holding ``ip`` on a user network
        ``sandbox_id`` is on (docker's answer); None otherwise."""
        nets, _names, rev, _links = self._current()
        for nid in sorted(nets.get(sandbox_id, ())):
            name = rev.get((nid, ip))
            if name is not None:
                return name
        return None

    def invalidate(self) -> None:
        """Endpoints changed: the next lookup builds the index again."""
        with self._lock:
            self._index = None
            self._gen += 1

    def _build(self) -> _Index:
        # Built on the DNS serving thread: the cluster's networks as last known.
        cluster = self.ctrl.cluster
        known = self.ctrl.local_networks() + (cluster.known_networks() if cluster else [])
        networks = {n.id: n for n in known if not n.builtin}
        nets: dict[str, set[str]] = {}
        names: dict[tuple[str, str], list[str]] = {}
        rev: dict[tuple[str, str], str] = {}

        def add(nid: str, name: str, aliases: Iterable[str], addrs: list[str]) -> None:
            for n in {name.lower(), *(a.lower() for a in aliases)}:
                if n:
                    names.setdefault((nid, n), []).extend(addrs)
            for a in addrs:
                rev.setdefault((nid, a), f"{name}.{networks[nid].name}")

        for ep in self.ctrl.endpoints():
            if ep.network_id not in networks:
                continue
            nets.setdefault(ep.sandbox_id, set()).add(ep.network_id)
            add(
                ep.network_id,
                ep.name,
                ep.aliases,
                [a.split("/")[0] for a in (ep.ipv4, ep.ipv6) if a],
            )
        cluster = self.ctrl.cluster
        if cluster is not None:
            # Overlay networks: the names other hosts published (the agent's copy).
            joined = set().union(*nets.values()) if nets else set()
            for n in networks.values():
                if n.scope != "global" or n.id not in joined:
                    continue
                for rec in cluster.agent.endpoints(n.id):
                    if rec.host != cluster.node:  # ours are in the local store already
                        add(n.id, rec.name, rec.aliases, [rec.ip])
        # --link NAME:ALIAS on a user network: ALIAS is NAME's addresses on that
        # network, for the linking sandbox only
        links: dict[tuple[str, str], list[str]] = {}
        for ep in self.ctrl.endpoints():
            if ep.network_id not in networks:
                continue
            for link in ep.links:
                target, _, alias = link.partition(":")
                addrs = names.get((ep.network_id, target.lower()))
                if addrs:
                    links.setdefault((ep.sandbox_id, alias.lower()), []).extend(addrs)
        return nets, names, rev, links
