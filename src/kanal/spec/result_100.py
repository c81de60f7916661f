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

from kanal.spec import wirefields
from kanal.spec.gotypes import RESULT_100
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
    interfaces, ips, routes, dns = wirefields.result_from_go(RESULT_100, data, via_map=via_map)
    return Result(
        cni_version=cni_version,
        interfaces=[
            Interface(
                name=i["name"],
                mac=i["mac"],
                mtu=i["mtu"],
                sandbox=i["sandbox"],
                socket_path=i["socketPath"],
                pci_id=i["pciID"],
            )
            for i in interfaces
        ],
        ips=[IPConfig(address, c["gateway"], c["interface"]) for c, address in ips],
        routes=routes,
        dns=dns,
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


def to_wire(r: Result) -> dict[str, Any]:
    """The JSON-ready dict at ``r.cni_version``, in Go struct field order (``dns``
    dropped when empty)."""
    out = wirefields.result_to_wire(
        r.cni_version,
        [_interface_to_wire(i) for i in r.interfaces],
        [wirefields.ipconfig_to_wire({}, c.interface, c.address, c.gateway) for c in r.ips],
        r.routes,
    )
    if not r.dns.is_empty():
        out["dns"] = wirefields.dns_to_wire(r.dns)
    return out
