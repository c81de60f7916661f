"""Result wire shape of spec 0.1.0 and 0.2.0 (Go ``pkg/types/020``).

::

    {"cniVersion": "0.2.0",
     "ip4": {"ip": "10.0.0.2/24", "gateway": "10.0.0.1", "routes": [{"dst": .., "gw": ..}]},
     "ip6": {...},
     "dns": {}}

At most one address per family; routes hang off their family. ``ip4``/``ip6``,
``gateway`` and ``routes`` are omitted when empty. ``dns`` is always printed, even
as ``{}`` (Go's ``omitempty`` has no effect on a struct).
"""

from __future__ import annotations

from kanal._dataclass import dataclass, field
from kanal.spec import _wire
from kanal.spec.types import DNS, IPAddr, IPInterface, Route

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["VERSIONS", "IPConfig020", "Result020", "from_wire", "to_wire"]

VERSIONS: tuple[str, ...] = ("0.1.0", "0.2.0")


@dataclass(slots=True)
class IPConfig020:
    ip: IPInterface
    gateway: IPAddr | None = None
    routes: list[Route] = field(default_factory=list)


@dataclass(slots=True)
class Result020:
    cni_version: str
    ip4: IPConfig020 | None = None
    ip6: IPConfig020 | None = None
    dns: DNS = field(default_factory=DNS)


def _ipconfig_from_go(d: Mapping[str, Any] | None, path: str) -> IPConfig020 | None:
    if d is None:
        return None
    return IPConfig020(
        ip=_wire.need_cidr(d["ip"], f"{path}.ip"),
        gateway=d["gateway"],
        routes=_wire.routes_from_go(d["routes"], f"{path}.routes"),
    )


def from_wire(data: Mapping[str, Any], cni_version: str, *, via_map: bool = False) -> Result020:
    """Decode a 0.1.0/0.2.0 result object; ``cni_version`` is its resolved version.

    Raises:
        DecodeError: Go's decode error, or a missing address.
    """
    from kanal.spec.gotypes import RESULT_020

    d = _wire.decode(RESULT_020, data, via_map=via_map)
    return Result020(
        cni_version=cni_version,
        ip4=_ipconfig_from_go(d["ip4"], "ip4"),
        ip6=_ipconfig_from_go(d["ip6"], "ip6"),
        dns=_wire.dns_from_go(d["dns"]),
    )


def _ipconfig_to_wire(c: IPConfig020) -> dict[str, Any]:
    out: dict[str, Any] = {"ip": c.ip.with_prefixlen}
    if c.gateway is not None:
        out["gateway"] = str(c.gateway)
    if c.routes:
        out["routes"] = [_wire.route_to_wire(r) for r in c.routes]
    return out


def to_wire(r: Result020) -> dict[str, Any]:
    """The JSON-ready dict, in Go struct field order."""
    out: dict[str, Any] = {"cniVersion": r.cni_version}
    if r.ip4 is not None:
        out["ip4"] = _ipconfig_to_wire(r.ip4)
    if r.ip6 is not None:
        out["ip6"] = _ipconfig_to_wire(r.ip6)
    out["dns"] = _wire.dns_to_wire(r.dns)
    return out
