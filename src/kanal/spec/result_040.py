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
from kanal.spec import _wire
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
    from kanal.spec.gotypes import RESULT_040

    d = _wire.decode(RESULT_040, data, via_map=via_map)
    interfaces = []
    for itf in _wire.elements(d["interfaces"], "interfaces"):
        interfaces.append(Interface040(name=itf["name"], mac=itf["mac"], sandbox=itf["sandbox"]))
    ips = []
    for i, ipc in enumerate(_wire.elements(d["ips"], "ips")):
        ips.append(
            IPConfig040(
                version=ipc["version"],
                address=_wire.need_cidr(ipc["address"], f"ips[{i}].address"),
                gateway=ipc["gateway"],
                interface=ipc["interface"],
            )
        )
    return Result040(
        cni_version=cni_version,
        interfaces=interfaces,
        ips=ips,
        routes=_wire.routes_from_go(d["routes"]),
        dns=_wire.dns_from_go(d["dns"]),
    )


def _interface_to_wire(i: Interface040) -> dict[str, Any]:
    out: dict[str, Any] = {"name": i.name}
    if i.mac:
        out["mac"] = i.mac
    if i.sandbox:
        out["sandbox"] = i.sandbox
    return out


def _ipconfig_to_wire(c: IPConfig040) -> dict[str, Any]:
    out: dict[str, Any] = {"version": c.version}
    if c.interface is not None:
        out["interface"] = c.interface
    out["address"] = c.address.with_prefixlen
    if c.gateway is not None:
        out["gateway"] = str(c.gateway)
    return out


def to_wire(r: Result040) -> dict[str, Any]:
    """The JSON-ready dict, in Go struct field order."""
    out: dict[str, Any] = {"cniVersion": r.cni_version}
    if r.interfaces:
        out["interfaces"] = [_interface_to_wire(i) for i in r.interfaces]
    if r.ips:
        out["ips"] = [_ipconfig_to_wire(c) for c in r.ips]
    if r.routes:
        out["routes"] = [_wire.route_to_wire(rt) for rt in r.routes]
    out["dns"] = _wire.dns_to_wire(r.dns)
    return out
