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


def _interface_from_wire(value: Any, path: str) -> Interface040:
    d = _wire.as_obj(value, path)
    return Interface040(
        name=_wire.get_str(d, "name", path),
        mac=_wire.get_str(d, "mac", path),
        sandbox=_wire.get_str(d, "sandbox", path),
    )


def _ipconfig_from_wire(value: Any, path: str) -> IPConfig040:
    d = _wire.as_obj(value, path)
    return IPConfig040(
        version=_wire.get_str(d, "version", path),
        address=_wire.get_cidr(d, "address", path),
        gateway=_wire.get_ip(d, "gateway", path),
        interface=_wire.get_int(d, "interface", path),
    )


def from_wire(data: Mapping[str, Any], cni_version: str) -> Result040:
    """Decode a 0.3.x/0.4.0 result object; ``cni_version`` is its resolved version.

    Raises:
        DecodeError: a field has the wrong type or an address does not parse.
    """
    return Result040(
        cni_version=cni_version,
        interfaces=[
            _interface_from_wire(v, f"interfaces[{i}]")
            for i, v in enumerate(_wire.get_list(data, "interfaces", ""))
        ],
        ips=[
            _ipconfig_from_wire(v, f"ips[{i}]")
            for i, v in enumerate(_wire.get_list(data, "ips", ""))
        ],
        routes=[
            _wire.route_from_wire(v, f"routes[{i}]")
            for i, v in enumerate(_wire.get_list(data, "routes", ""))
        ],
        dns=_wire.dns_from_wire(data.get("dns"), "dns"),
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
