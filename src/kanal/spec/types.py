"""The one in-memory CNI result: the current (1.1.0) result shape.

Plugins build these and the dispatcher renders them at the config's ``cniVersion``
(:func:`kanal.spec.convert.render_result`); runtimes and chained plugins decode any
wire version into them (:func:`kanal.spec.convert.parse_result`). An IPAM result is
the same shape with no interfaces and no ``IPConfig.interface``.

Addresses keep their host bits (``10.0.0.5/24``), as Go's ``types.ParseCIDR`` does,
and render with ``with_prefixlen``.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

from kanal._dataclass import dataclass, field
from kanal.errors import DecodeError
from kanal.spec.versions import CURRENT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

__all__ = [
    "DNS",
    "IPAddr",
    "IPConfig",
    "IPInterface",
    "Interface",
    "Result",
    "Route",
    "parse_cidr",
    "parse_ip",
]

IPInterface = IPv4Interface | IPv6Interface
IPAddr = IPv4Address | IPv6Address

# Go's net.ParseCIDR wants "addr/decimal-prefix": no netmask notation, no zone.
# (Checked by hand, not with re: that import alone costs a plugin exec ~4 ms.)
_IP_CHARS = frozenset("0123456789abcdefABCDEF:.")
_DIGITS = frozenset("0123456789")


def _ip_text(s: str) -> bool:
    """``\\A[0-9A-Fa-f:.]+\\Z``."""
    return bool(s) and all(c in _IP_CHARS for c in s)


def parse_ip(s: str) -> IPAddr:
    """An IP address as Go ``net.ParseIP`` accepts it (no zone, no brackets).

    Raises:
        DecodeError: not an IPv4 or IPv6 address.
    """
    if isinstance(s, str) and _ip_text(s):
        try:
            if ":" in s:
                return IPv6Address(s)
            return IPv4Address(s)
        except ValueError:
            pass
    raise DecodeError(f"invalid IP address {s!r}")


def parse_cidr(s: str) -> IPInterface:
    """``addr/prefix`` keeping the host bits (Go ``types.ParseCIDR``).

    Raises:
        DecodeError: not ``address/prefixlen`` with a prefix valid for the family.
    """
    addr, sep, digits = s.partition("/") if isinstance(s, str) else ("", "", "")
    # ``\A([0-9A-Fa-f:.]+)/([0-9]{1,3})\Z``
    if sep and _ip_text(addr) and 1 <= len(digits) <= 3 and all(c in _DIGITS for c in digits):
        plen = int(digits)
        try:
            if ":" in addr:
                if plen <= 128:
                    return IPv6Interface((IPv6Address(addr), plen))
            elif plen <= 32:
                return IPv4Interface((IPv4Address(addr), plen))
        except ValueError:
            pass
    raise DecodeError(f"invalid CIDR address: {s}")


@dataclass(slots=True)
class Interface:
    """``interfaces[]``: ``mtu``, ``socket_path`` and ``pci_id`` are 1.1.0 fields."""

    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int = 0
    socket_path: str = ""
    pci_id: str = ""


@dataclass(slots=True)
class IPConfig:
    """``ips[]``: ``interface`` indexes ``Result.interfaces`` (None: not on a listed one)."""

    address: IPInterface
    gateway: IPAddr | None = None
    interface: int | None = None

    @property
    def version(self) -> Literal["4", "6"]:
        return "4" if self.address.version == 4 else "6"


@dataclass(slots=True)
class Route:
    """``routes[]``; ``dst`` keeps host bits as given. ``mtu``..``scope`` are 1.1.0 fields.

    ``table``/``scope`` are None when unset (Go ``*int``: 0 is a real value there).
    """

    dst: IPInterface
    gw: IPAddr | None = None
    mtu: int = 0
    advmss: int = 0
    priority: int = 0
    table: int | None = None
    scope: int | None = None


@dataclass(slots=True)
class DNS:
    """Result ``dns`` (also the conf ``dns`` key)."""

    nameservers: list[str] = field(default_factory=list)
    domain: str = ""
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.nameservers or self.domain or self.search or self.options)


@dataclass(slots=True)
class Result:
    """A CNI result in the current shape.

    ``cni_version`` records the wire version it was decoded from (informational);
    rendering (:func:`kanal.spec.convert.render_result`) takes the target version
    as an argument and ignores it.
    """

    cni_version: str = CURRENT
    interfaces: list[Interface] = field(default_factory=list)
    ips: list[IPConfig] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: DNS = field(default_factory=DNS)
