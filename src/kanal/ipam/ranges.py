"""host-local address ranges and range sets: parsing and validation (pure).

Go reference: ``plugins/ipam/host-local/backend/allocator/{range,range_set}.go``.
A *range* is ``{subnet, rangeStart?, rangeEnd?, gateway?}``; a *range set* is a
list of ranges of one family from which one address is allocated. Canonicalisation
follows Go exactly, with the same error texts:

- the subnet must have room for at least two hosts ("/31 and /32 too small"), and
  no host bits set;
- ``gateway`` defaults to the subnet's first address (.1) and is not checked;
- ``rangeStart`` defaults to .1 (the allocator skips the gateway), ``rangeEnd`` to
  the last address before the IPv4 broadcast, or the very last IPv6 address;
- ranges of one set must be of one family and must not overlap.

One deliberate difference: a range whose start is after its end (only possible
with ``rangeStart`` set to the IPv4 broadcast and no ``rangeEnd``) is rejected
here; Go accepts it and then walks the whole address space.

IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``) are IPv4, as Go's ``To4()`` says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from kanal._dataclass import dataclass
from kanal.spec.gojson import Slice, Struct, decode
from kanal.spec.gotypes import IP, IPNET
from kanal.spec.types import IPAddr, IPInterface

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "RANGE",
    "RANGE_SET",
    "Range",
    "RangeError",
    "RangeSet",
    "canonical_ip",
    "ip_from_int",
    "parse_range",
    "parse_range_set",
    "range_from_go",
    "range_set_from_go",
]


class RangeError(ValueError):
    """A range or range set failed Go's ``Canonicalize`` (message is Go's text)."""


def canonical_ip(ip: IPAddr) -> IPAddr:
    """IPv4-mapped IPv6 becomes IPv4 (Go ``canonicalizeIP``)."""
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def ip_from_int(version: int, value: int) -> IPAddr:
    return IPv4Address(value) if version == 4 else IPv6Address(value)


@dataclass(frozen=True, slots=True)
class Range:
    """One canonical range. ``start``/``end``/``gw`` are the integer forms.

    ``gw`` is -1 when the gateway is of the other family (Go accepts that and
    then never matches it).
    """

    subnet: IPv4Network | IPv6Network
    range_start: IPAddr
    range_end: IPAddr
    gateway: IPAddr
    version: int
    start: int
    end: int
    gw: int

    def contains(self, addr: IPAddr) -> bool:
        """Same family and ``rangeStart <= addr <= rangeEnd`` (Go ``Range.Contains``)."""
        addr = canonical_ip(addr)
        return addr.version == self.version and self.start <= int(addr) <= self.end

    def overlaps(self, other: Range) -> bool:
        if self.version != other.version:
            return False
        return self.start <= other.end and other.start <= self.end

    def __str__(self) -> str:
        return f"{self.range_start}-{self.range_end}"


@dataclass(frozen=True, slots=True)
class RangeSet:
    """Ranges of one family, non-overlapping; one address is allocated per set."""

    ranges: tuple[Range, ...]

    @property
    def version(self) -> int:
        return self.ranges[0].version

    def contains(self, addr: IPAddr) -> bool:
        return any(r.contains(addr) for r in self.ranges)

    def range_for(self, addr: IPAddr) -> Range:
        """The range holding ``addr``.

        Raises:
            RangeError: "<addr> not in range set <set>".
        """
        for r in self.ranges:
            if r.contains(addr):
                return r
        raise RangeError(f"{canonical_ip(addr)} not in range set {self}")

    def index_of(self, addr: IPAddr) -> int:
        for i, r in enumerate(self.ranges):
            if r.contains(addr):
                return i
        return -1

    def overlaps(self, other: RangeSet) -> bool:
        return any(a.overlaps(b) for a in self.ranges for b in other.ranges)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)


def _net_str(net: IPv4Network | IPv6Network) -> str:
    return net.with_prefixlen


# Go allocator.Range; a range set is a []Range.
RANGE = Struct(
    "Range",
    [("rangeStart", IP), ("rangeEnd", IP), ("subnet", IPNET), ("gateway", IP)],
    pkg="allocator",
)
RANGE_SET = Slice(RANGE)


def parse_range(raw: Any, what: str = "range") -> Range:
    """Decode (Go's rules) and canonicalise one range object.

    Raises:
        InvalidConfig: Go's decode error (a wrong JSON type, an unparsable address).
        RangeError: Go ``Range.Canonicalize`` errors, with Go's texts.
    """
    return range_from_go(decode(RANGE, raw, f"invalid {what}"))


def range_from_go(d: Mapping[str, Any]) -> Range:
    """Canonicalise a decoded :data:`RANGE` (Go ``Range.Canonicalize``).

    Raises:
        RangeError: with Go's texts.
    """
    iface: IPInterface | None = d["subnet"]
    if iface is None:
        # Go decodes a missing subnet as a nil IP and fails in canonicalizeIP.
        raise RangeError("IP <nil> not v4 nor v6")
    start_ip = _canon(d["rangeStart"])
    end_ip = _canon(d["rangeEnd"])
    gw_ip = _canon(d["gateway"])

    ones, masklen = iface.network.prefixlen, iface.max_prefixlen
    if ones > masklen - 2:
        raise RangeError(f"Network {iface.with_prefixlen} too small to allocate from")
    if canonical_ip(iface.ip).version != iface.version:
        raise RangeError("IPNet IP and Mask version mismatch")
    net = iface.network
    if iface.ip != net.network_address:
        raise RangeError(
            "Network has host bits set. For a subnet mask of length "
            f"{ones} the network address is {net.network_address}"
        )
    version = net.version
    first = int(net.network_address)
    last = int(net.broadcast_address)

    gateway = gw_ip if gw_ip is not None else ip_from_int(version, first + 1)

    def inside(ip: IPAddr, lower: int) -> bool:
        return ip.version == version and lower <= int(ip) <= last

    if start_ip is not None:
        if not inside(start_ip, first):
            raise RangeError(f"RangeStart {start_ip} not in network {_net_str(net)}")
        start = int(start_ip)
    else:
        start = first + 1
    if end_ip is not None:
        if not inside(end_ip, start):
            raise RangeError(f"RangeEnd {end_ip} not in network {_net_str(net)}")
        end = int(end_ip)
    else:
        end = last - 1 if version == 4 else last
    if start > end:
        raise RangeError(
            f"RangeStart {ip_from_int(version, start)} is after RangeEnd "
            f"{ip_from_int(version, end)}"
        )
    return Range(
        subnet=net,
        range_start=ip_from_int(version, start),
        range_end=ip_from_int(version, end),
        gateway=gateway,
        version=version,
        start=start,
        end=end,
        gw=int(gateway) if gateway.version == version else -1,
    )


def _canon(ip: IPAddr | None) -> IPAddr | None:
    return None if ip is None else canonical_ip(ip)


def parse_range_set(raw: Any, what: str = "range set") -> RangeSet:
    """Decode (Go's rules) and canonicalise a range set (a list of range objects).

    Raises:
        InvalidConfig: Go's decode error.
        RangeError: as :func:`range_set_from_go`.
    """
    return range_set_from_go(decode(RANGE_SET, raw, f"invalid {what}") or [])


def range_set_from_go(items: Sequence[Mapping[str, Any]]) -> RangeSet:
    """Canonicalise a decoded :data:`RANGE_SET` (Go ``RangeSet.Canonicalize``).

    Raises:
        RangeError: "empty range set", "mixed address families", "subnets A and B
            overlap" or a range's own canonicalisation error.
    """
    if not items:
        raise RangeError("empty range set")
    ranges: list[Range] = []
    for item in items:
        r = range_from_go(item)
        if ranges and r.version != ranges[0].version:
            raise RangeError("mixed address families")
        ranges.append(r)
    for i, r1 in enumerate(ranges):
        for r2 in ranges[i + 1 :]:
            if r1.overlaps(r2):
                raise RangeError(f"subnets {r1} and {r2} overlap")
    return RangeSet(tuple(ranges))
