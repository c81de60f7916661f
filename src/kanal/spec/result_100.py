"""Result wire shape of spec 1.0.0 and 1.1.0 (Go ``pkg/types/100``): the model's own shape.

::

    {"cniVersion": "1.1.0",
     "interfaces": [{"name": "eth0", "mac": "..", "mtu": 1500, "sandbox": "..",
                     "socketPath": "..", "pciID": ".."}],
     "ips": [{"interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"}],
     "routes": [{"dst": "0.0.0.0/0", "gw": "..", "mtu": 0, "advmss": 0, "priority": 0,
                 "table": 0, "scope": 0}],
     "dns": {...}}

No ``ips[].version`` any more. ``mtu``/``socketPath``/``pciID`` and the extra route
fields are 1.1.0 additions, but Go uses one struct for both versions, so a 1.0.0
result carries them too when set. Every field is omitted when empty; ``dns`` is
dropped entirely when empty (Go's ``Result.MarshalJSON``). Go HEAD's MarshalJSON
also happens to sort keys (a map round trip); we keep the struct order, which is
equivalent JSON and what 1.0-era Go printed.
"""

from __future__ import annotations

from kanal.spec import _wire
from kanal.spec.types import Interface, IPConfig, Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["VERSIONS", "from_wire", "to_wire"]

VERSIONS: tuple[str, ...] = ("1.0.0", "1.1.0")


def from_wire(data: Mapping[str, Any], cni_version: str, *, via_map: bool = False) -> Result:
    """Decode a 1.0.0/1.1.0 result object; ``cni_version`` is its resolved version.

    ``via_map``: the object went through a ``map[string]interface{}`` (a prevResult).

    Raises:
        DecodeError: Go's decode error (a wrong type, an unparsable address), or a
            missing address.
    """
    from kanal.spec.gotypes import RESULT_100

    d = _wire.decode(RESULT_100, data, via_map=via_map)
    interfaces = []
    for itf in _wire.elements(d["interfaces"], "interfaces"):
        interfaces.append(
            Interface(
                name=itf["name"],
                mac=itf["mac"],
                mtu=itf["mtu"],
                sandbox=itf["sandbox"],
                socket_path=itf["socketPath"],
                pci_id=itf["pciID"],
            )
        )
    ips = []
    for i, ipc in enumerate(_wire.elements(d["ips"], "ips")):
        ips.append(
            IPConfig(
                address=_wire.need_cidr(ipc["address"], f"ips[{i}].address"),
                gateway=ipc["gateway"],
                interface=ipc["interface"],
            )
        )
    return Result(
        cni_version=cni_version,
        interfaces=interfaces,
        ips=ips,
        routes=_wire.routes_from_go(d["routes"]),
        dns=_wire.dns_from_go(d["dns"]),
    )


def _interface_to_wire(i: Interface) -> dict[str, Any]:
    out: dict[str, Any] = {"name": i.name}
    if i.mac:
        out["mac"] = i.mac
    if i.mtu:
        out["mtu"] = i.mtu
    if i.sandbox:
        out["sandbox"] = i.sandbox
    if i.socket_path:
        out["socketPath"] = i.socket_path
    if i.pci_id:
        out["pciID"] = i.pci_id
    return out


def _ipconfig_to_wire(c: IPConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if c.interface is not None:
        out["interface"] = c.interface
    out["address"] = c.address.with_prefixlen
    if c.gateway is not None:
        out["gateway"] = str(c.gateway)
    return out


def to_wire(r: Result) -> dict[str, Any]:
    """The JSON-ready dict at ``r.cni_version``, in Go struct field order."""
    out: dict[str, Any] = {"cniVersion": r.cni_version}
    if r.interfaces:
        out["interfaces"] = [_interface_to_wire(i) for i in r.interfaces]
    if r.ips:
        out["ips"] = [_ipconfig_to_wire(c) for c in r.ips]
    if r.routes:
        out["routes"] = [_wire.route_to_wire(rt) for rt in r.routes]
    if not r.dns.is_empty():
        out["dns"] = _wire.dns_to_wire(r.dns)
    return out
