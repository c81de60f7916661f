"""Result wire shape of spec 0.3.0, 0.3.1 and 0.4.0 (Go ``pkg/types/040``).

::

    {"cniVersion": "0.4.0",
     "interfaces": [{"name": "eth0", "mac": "..", "sandbox": ".."}],
     "ips": [{"version": "4", "interface": 0, "address": "10.0.0.2/24", "gateway": ".."}],
     "routes": [{"dst": "0.0.0.0/0", "gw": ".."}],
     "dns": {}}

0.3.0 uses ``ips`` too (Go never implemented the draft's ``ip``). ``version`` is
always printed; ``interface`` (index, 0 is printed) and ``gateway`` are omitted when
unset; empty ``interfaces``/``ips``/``routes`` are omitted; ``dns`` is always printed.
Interfaces have no 1.1.0 fields here, but routes are Go's shared ``types.Route``, so
``mtu``/``advmss``/``priority``/``table``/``scope`` survive in these versions.
"""

from __future__ import annotations

from kanal._dataclass import dataclass, field
from kanal.spec import wirefields
from kanal.spec.gotypes import RESULT_040
from kanal.spec.types import DNS, IPAddr, IPInterface, Route

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["VERSIONS", "IPConfig040", "Interface040", "Result040", "from_wire", "to_wire"]

VERSIONS: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0")


@dataclass(slots=True)
class Interface040:
    name: str
    mac: str = ""
    sandbox: str = ""


@dataclass(slots=True)
class IPConfig040:
    """``version`` is kept as sent ("4"/"6"); Go trusts it when converting down to 0.2.0."""

    version: str
    address: IPInterface
    gateway: IPAddr | None = None
    interface: int | None = None


@dataclass(slots=True)
class Result040:
    cni_version: str
    interfaces: list[Interface040] = field(default_factory=list)
    ips: list[IPConfig040] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    dns: DNS = field(default_factory=DNS)


def from_wire(data: Mapping[str, Any], cni_version: str, *, via_map: bool = False) -> Result040:
    """Decode a 0.3.x/0.4.0 result object; ``cni_version`` is its resolved version.

    Raises:
        DecodeError: Go's decode error, or a missing address.
    """
    interfaces, ips, routes, dns = wirefields.result_from_go(RESULT_040, data, via_map=via_map)
    return Result040(
        cni_version=cni_version,
        interfaces=[Interface040(i["name"], i["mac"], i["sandbox"]) for i in interfaces],
        ips=[
            IPConfig040(c["version"], address, c["gateway"], c["interface"]) for c, address in ips
        ],
        routes=routes,
        dns=dns,
    )


def _interface_to_wire(i: Interface040) -> dict[str, Any]:
    out: dict[str, Any] = {"name": i.name}
    if i.mac:
        out["mac"] = i.mac
    if i.sandbox:
        out["sandbox"] = i.sandbox
    return out


def to_wire(r: Result040) -> dict[str, Any]:
    """The JSON-ready dict, in Go struct field order (``dns`` always printed)."""
    out = wirefields.result_to_wire(
        r.cni_version,
        [_interface_to_wire(i) for i in r.interfaces],
        [
            wirefields.ipconfig_to_wire({"version": c.version}, c.interface, c.address, c.gateway)
            for c in r.ips
        ],
        r.routes,
    )
    out["dns"] = wirefields.dns_to_wire(r.dns)
    return out
