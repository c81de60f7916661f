"""The reservation store contract shared by the disk and in-memory stores.

A store holds the reservations of ONE network: which address is held by which
attachment ``(containerID, ifname)``, plus the last reserved address per range-set
index (round-robin). It mirrors Go's ``backend.Store`` (``plugins/ipam/host-local/
backend/store.go``) with two additions: an index lookup (:meth:`Store.is_reserved`)
so the allocator does not probe the backend for every candidate, and GC helpers.

Every method except :meth:`Store.locked` must be called inside ``with
store.locked():``. The lock excludes other threads of this process and, for the
disk store, other processes (Go's host-local included).
"""

from __future__ import annotations

from kanal._dataclass import dataclass
from kanal.errors import DecodeError, NotFound
from kanal.spec.types import IPAddr, parse_ip

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Set
    from contextlib import AbstractContextManager
    from typing import Protocol
else:
    Protocol = object  # typing costs a plugin exec ~6 ms; nothing checks this at run time

__all__ = [
    "Reservation",
    "Store",
    "StoreMissing",
    "go_trim",
    "name_ip",
    "owner_key",
    "parse_owner",
]

# Go's unicode.IsSpace set, what strings.TrimSpace removes (str.strip() also
# removes \x1c-\x1f, which Go keeps).
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


class StoreMissing(NotFound):
    """The network's store does not exist (and was not to be created)."""


def go_trim(s: str) -> str:
    """Go ``strings.TrimSpace``."""
    return s.strip(_GO_SPACE)


def owner_key(container_id: str, ifname: str) -> str:
    """What Go writes in a reservation file: ``"<id>\\r\\n<ifname>"`` (id trimmed)."""
    return go_trim(container_id) + "\r\n" + ifname


def parse_owner(content: str) -> tuple[str | None, str | None]:
    """Reservation content to ``(container_id, ifname)``, as Go's matching reads it.

    Go compares ``TrimSpace(content)`` with ``"<id>\\r\\n<ifname>"`` and then with the
    bare ``"<id>"`` (legacy files). So: empty -> ``(None, None)``; no CRLF ->
    ``(content, None)`` (legacy); else split at the first CRLF.
    """
    text = go_trim(content)
    if not text:
        return None, None
    cid, sep, ifname = text.partition("\r\n")
    if not sep:
        return text, None
    return cid, ifname


def name_ip(name: str) -> IPAddr | None:
    """The address an entry name stands for (Go ``net.ParseIP(name)``), or None."""
    try:
        return parse_ip(name)
    except DecodeError:
        return None


@dataclass(frozen=True, slots=True)
class Reservation:
    """One entry of a store.

    ``name`` is the entry's key (the file name on disk: the address string).
    ``ip`` is None for an entry whose name is not an address. ``container_id`` is
    None for an empty entry (a crash between create and write); ``ifname`` is None
    for a legacy entry that records only the container ID.
    """

    name: str
    ip: IPAddr | None
    container_id: str | None
    ifname: str | None


class Store(Protocol):
    """Reservations of one network. Thread-safe through :meth:`locked`."""

    def locked(self, create: bool = True) -> AbstractContextManager[None]:
        """Hold the store's lock (and bring any cached view up to date).

        Args:
            create: create the store (directory) if missing; if False and it is
                missing, raise :class:`StoreMissing`.

        Raises:
            StoreMissing: ``create`` is False and the store does not exist.
            IOFailure: the store cannot be created or locked.
        """
        ...

    def reserve(self, container_id: str, ifname: str, ip: IPAddr, range_id: str) -> bool:
        """Reserve ``ip`` for the attachment and remember it as range ``range_id``'s last.

        Returns False (and changes nothing) if ``ip`` is already reserved by anyone.

        Raises:
            IOFailure: the backend failed; nothing was reserved.
        """
        ...

    def is_reserved(self, ip: IPAddr) -> bool:
        """Whether some entry holds ``ip`` (cheap; the allocator's pre-check)."""
        ...

    def reserved_ints(self, version: int) -> Set[int]:
        """The held addresses of one family as integers (a view valid under the lock)."""
        ...

    def last_reserved_ip(self, range_id: str) -> IPAddr | None:
        """The last address reserved in range set ``range_id``, or None."""
        ...

    def release_by_id(self, container_id: str, ifname: str) -> bool:
        """Release every entry of ``(container_id, ifname)``, as Go ``ReleaseByID``.

        If there is none, releases the legacy entries that record only
        ``container_id``. Idempotent. Returns whether anything was released.

        Raises:
            IOFailure: an entry could not be removed (the others still were).
        """
        ...

    def get_by_id(self, container_id: str, ifname: str) -> list[IPAddr]:
        """Addresses held by ``(container_id, ifname)`` or by legacy ``container_id``."""
        ...

    def find_by_id(self, container_id: str, ifname: str) -> bool:
        """Whether any entry (address-named or not) belongs to the attachment (Go CHECK)."""
        ...

    def reservations(self) -> Iterator[Reservation]:
        """Every entry, for GC and inspection (a snapshot; safe to release while iterating)."""
        ...

    def release(self, name: str) -> None:
        """Remove one entry by name; a missing entry is success.

        Raises:
            IOFailure: the entry exists and could not be removed.
        """
        ...

    def sweep_empty(self, min_age: float) -> list[str]:
        """Remove empty entries (crash leftovers) older than ``min_age`` seconds.

        Returns the removed names. Stores that cannot hold empty entries return [].
        """
        ...
