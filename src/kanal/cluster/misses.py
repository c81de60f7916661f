"""Answering VXLAN misses: the overlay agent's part that tells a container at once.

The devices are made with ``l3miss``; the kernel reports an ARP or neighbour
solicitation a device had no entry for, and the request itself is gone. The
agent answers on the network's bridge with a gratuitous ARP (or unsolicited NA)
as soon as it knows the address (docs/overlay.md, "Misses answered at once").
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Iterable

from kanal.cluster.vxlan import EndpointRecord, OverlayLink
from kanal.netlink.neighmiss import Announcer, MissListener
from kanal.netlink.ns import netns_socket

__all__ = ["MAX_PENDING", "MISS_WAIT", "MissAnswering"]

#: how long a miss for an address nobody has published yet is remembered (s): the
#: asker gives up after its 3 probes, 1 s apart
MISS_WAIT = 3.0
MAX_PENDING = 4096
log = logging.getLogger("kanal.cluster")


class MissAnswering:
    """Mixed into :class:`~kanal.cluster.agent.OverlayAgent`, which owns the state
    declared here and programs the kernel (``_program``, ``_notify``)."""

    netns_fd: int | None
    _lock: threading.RLock
    _stop: threading.Event
    _dev_index: dict[str, int]  # net -> its device's ifindex
    _pending: dict[tuple[str, str], float]  # (net, ip) missed -> until
    _announcer: Announcer | None
    _remote: dict[str, dict[str, EndpointRecord]]  # net -> ip -> programmed
    _links: dict[str, OverlayLink]

    def _program(self, networks: Iterable[str], *, mode: str = "full") -> None:
        raise NotImplementedError  # the agent's

    def _notify(self) -> None:
        raise NotImplementedError  # the agent's

    def _miss_loop(self) -> None:
        try:
            if self.netns_fd is None:
                listener, announcer = MissListener(), Announcer()
            else:
                raw = socket.SOCK_RAW | socket.SOCK_CLOEXEC
                listener = MissListener(netns_socket(self.netns_fd, socket.AF_NETLINK, raw, 0))
                announcer = Announcer(netns_socket(self.netns_fd, socket.AF_PACKET, raw))
        except OSError as e:
            log.warning("overlay agent: not answering VXLAN misses: %s", e)
            return
        with self._lock:
            self._announcer = announcer
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([listener], [], [], 0.5)
                if ready:
                    for miss in listener.read():
                        self._on_miss(miss.ifindex, miss.ip)
                now = time.monotonic()
                with self._lock:
                    for key in [k for k, until in self._pending.items() if until < now]:
                        del self._pending[key]
        finally:
            with self._lock:
                self._announcer = None
            listener.close()
            announcer.close()

    def _on_miss(self, ifindex: int, ip: str) -> None:
        """A container asked for ``ip`` on a device that had no entry for it."""
        with self._lock:
            net = next((n for n, i in self._dev_index.items() if i == ifindex), None)
            if net is None:
                return  # not one of ours
            if len(self._pending) >= MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
            self._pending[(net, ip)] = time.monotonic() + MISS_WAIT
            if ip in self._remote.get(net, {}):
                # Known: the miss raced the programming (or an entry went missing).
                # The entries are made sure of and the asker told at once; otherwise
                # it is told when the watch delivers the endpoint.
                self._program([net], mode="delta")
        self._notify()

    def _answer_pending(self, net: str) -> None:
        """Announce the network's missed addresses that are known now (lock held)."""
        if not self._pending or self._announcer is None:
            return
        known, link = self._remote.get(net, {}), self._links.get(net)
        for key in [k for k in self._pending if k[0] == net and k[1] in known]:
            del self._pending[key]
            rec = known[key[1]]
            if link is not None:
                self._announcer.announce(link.bridge, rec.ip, rec.mac)
