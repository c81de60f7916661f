"""An in-memory :class:`~kanal.ipam.store.Store`: tests, and callers that keep state elsewhere.

Same semantics as the disk store (Go ``ReleaseByID`` exact-then-legacy matching,
last reserved address per range set), no persistence. Legacy and empty entries can
be planted with :meth:`MemoryStore.put_raw` to test the matching rules.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Set
from contextlib import contextmanager

from kanal.ipam.ranges import canonical_ip
from kanal.ipam.store import Reservation, go_trim, name_ip, owner_key, parse_owner
from kanal.spec.types import IPAddr

__all__ = ["MemoryStore"]


class MemoryStore:
    """Reservations of one network held in a dict; ``locked()`` is a re-entrant lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        # name -> raw content, exactly as a disk file would hold it
        self._entries: dict[str, str] = {}
        self._last: dict[str, IPAddr] = {}

    @contextmanager
    def locked(self, create: bool = True) -> Iterator[None]:
        with self._lock:
            yield

    def put_raw(self, name: str, content: str) -> None:
        """Plant an entry with arbitrary content (legacy "<id>", empty "", ...)."""
        self._entries[name] = content

    def reserve(self, container_id: str, ifname: str, ip: IPAddr, range_id: str) -> bool:
        name = str(canonical_ip(ip))
        if name in self._entries:
            return False
        self._entries[name] = owner_key(container_id, ifname)
        self._last[range_id] = canonical_ip(ip)
        return True

    def is_reserved(self, ip: IPAddr) -> bool:
        return str(canonical_ip(ip)) in self._entries

    def reserved_ints(self, version: int) -> Set[int]:
        out = set()
        for name in self._entries:
            ip = name_ip(name)
            if ip is not None:
                ip = canonical_ip(ip)
                if ip.version == version:
                    out.add(int(ip))
        return out

    def last_reserved_ip(self, range_id: str) -> IPAddr | None:
        return self._last.get(range_id)

    def _release_matching(self, match: str) -> bool:
        names = [n for n, c in self._entries.items() if go_trim(c) == match]
        for n in names:
            del self._entries[n]
        return bool(names)

    def release_by_id(self, container_id: str, ifname: str) -> bool:
        if self._release_matching(owner_key(container_id, ifname)):
            return True
        return self._release_matching(go_trim(container_id))

    def get_by_id(self, container_id: str, ifname: str) -> list[IPAddr]:
        matches = (owner_key(container_id, ifname), go_trim(container_id))
        out: list[IPAddr] = []
        for name, content in self._entries.items():
            if go_trim(content) in matches:
                ip = name_ip(name)
                if ip is not None:
                    out.append(ip)
        return out

    def find_by_id(self, container_id: str, ifname: str) -> bool:
        matches = (owner_key(container_id, ifname), go_trim(container_id))
        return any(go_trim(c) in matches for c in self._entries.values())

    def reservations(self) -> Iterator[Reservation]:
        snapshot = list(self._entries.items())
        for name, content in snapshot:
            cid, ifname = parse_owner(content)
            yield Reservation(name, name_ip(name), cid, ifname)

    def release(self, name: str) -> None:
        self._entries.pop(name, None)

    def sweep_empty(self, min_age: float) -> list[str]:
        names = [n for n, c in self._entries.items() if not go_trim(c)]
        for n in names:
            del self._entries[n]
        return names
