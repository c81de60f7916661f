"""Allocation from one range set over a :class:`~kanal.ipam.store.Store`.

Go reference: ``plugins/ipam/host-local/backend/allocator/allocator.go``. The
candidate order is Go's exactly: round-robin from the last reserved address + 1
(when it still lies in the set), wrapping from one range's end to the next range's
start and around the set, skipping each range's gateway, and giving up when the
walk returns to where it started. Without a usable last address the walk starts
at the first range's start. The error texts are Go's.

The difference from Go is only in cost: candidates the store's index already
knows to be taken are skipped without touching the backend.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv6Interface

from kanal.errors import Conflict
from kanal.ipam.ranges import RangeError, RangeSet, canonical_ip, ip_from_int
from kanal.ipam.store import Store
from kanal.spec.types import IPAddr, IPConfig, IPInterface

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["allocate", "candidates"]


def candidates(rs: RangeSet, last: IPAddr | None) -> Iterator[tuple[int, int]]:
    """Yield ``(range index, address as int)`` in Go ``RangeIter`` order, each at most once."""
    ranges = rs.ranges
    n = len(ranges)
    idx = 0
    cur: int | None = None
    start: int | None = ranges[0].start
    if last is not None:
        i = rs.index_of(last)
        if i >= 0:
            idx, cur, start = i, int(canonical_ip(last)), None
    while True:
        r = ranges[idx]
        if cur is None:
            cur = r.start
            start = cur
            if cur != r.gw:
                yield idx, cur
            continue
        if cur == r.end:
            idx = (idx + 1) % n
            r = ranges[idx]
            cur = r.start
        else:
            cur += 1
        if start is None:
            start = cur
        elif cur == start:
            return
        if cur != r.gw:
            yield idx, cur


def allocate(
    rs: RangeSet,
    store: Store,
    range_id: int,
    container_id: str,
    ifname: str,
    requested: IPAddr | None = None,
) -> IPConfig:
    """Reserve one address of ``rs`` for the attachment (Go ``IPAllocator.Get``).

    The caller holds ``store.locked()``. With ``requested`` that address is
    reserved or the call fails; otherwise the next free address in round-robin
    order. Without ``requested``, an attachment already holding an address of this
    set is refused (CNI forbids a second ADD without DEL).

    Raises:
        Conflict: "<ip> not in range set <set>", "requested ip <ip> is subnet's
            gateway", "requested IP address <ip> is not available in range set
            <set>", "<ip> has been allocated to <id>, duplicate allocation is not
            allowed", "no IP addresses available in range set: <set>".
        IOFailure: the store failed.
    """
    rid = str(range_id)
    if requested is not None:
        requested = canonical_ip(requested)
        try:
            r = rs.range_for(requested)
        except RangeError as e:
            raise Conflict(str(e)) from None
        if requested == r.gateway:
            raise Conflict(f"requested ip {requested} is subnet's gateway")
        if store.is_reserved(requested) or not store.reserve(container_id, ifname, requested, rid):
            raise Conflict(f"requested IP address {requested} is not available in range set {rs}")
        return IPConfig(address=_iface(requested, r.subnet.prefixlen), gateway=r.gateway)

    for held in store.get_by_id(container_id, ifname):
        if rs.contains(held):
            raise Conflict(
                f"{held} has been allocated to {container_id}, "
                "duplicate allocation is not allowed"
            )
    version = rs.version
    taken = store.reserved_ints(version)  # live view: skip known-taken without I/O
    for idx, value in candidates(rs, store.last_reserved_ip(rid)):
        if value in taken:
            continue
        ip = ip_from_int(version, value)
        if store.reserve(container_id, ifname, ip, rid):
            r = rs.ranges[idx]
            return IPConfig(address=_iface(ip, r.subnet.prefixlen), gateway=r.gateway)
    raise Conflict(f"no IP addresses available in range set: {rs}")


def _iface(ip: IPAddr, prefixlen: int) -> IPInterface:
    if isinstance(ip, IPv4Address):
        return IPv4Interface((ip, prefixlen))
    return IPv6Interface((ip, prefixlen))
