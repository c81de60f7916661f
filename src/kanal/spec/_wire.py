"""Field codecs shared by the result wire modules.

Decoding goes through :mod:`kanal.spec.gojson` with the ``pkg/types`` structs of
:mod:`kanal.spec.gotypes`: Go's key matching, null, number and error rules. The
helpers here turn the decoded structs into the model. One deliberate difference: a
missing ``address``/``ip``/``dst`` is an error here (Go would carry a zero IPNet and
print "<nil>").
"""

from __future__ import annotations

from collections.abc import Mapping

from kanal.errors import DecodeError
from kanal.spec import gojson
from kanal.spec.types import DNS, IPInterface, Route

ERR = "failed to decode CNI result"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def decode(spec: gojson.Spec, data: Mapping[str, Any], *, via_map: bool) -> dict[str, Any]:
    """``data`` as the struct ``spec``; ``via_map`` for a prevResult (see gojson).

    Raises:
        DecodeError: Go's decode error.
    """
    out: dict[str, Any] = gojson.decode(spec, data, ERR, via_map=via_map, error=DecodeError)
    return out


def elements(items: list[Any] | None, what: str) -> list[Any]:
    """A decoded ``[]*T``: a null element (a nil pointer Go would crash on) is an error."""
    out = items or []
    for i, item in enumerate(out):
        if item is None:
            raise DecodeError(ERR, f"{what}[{i}]: null")
    return out


def need_cidr(value: IPInterface | None, what: str) -> IPInterface:
    if value is None:
        raise DecodeError(ERR, f"{what}: missing")
    return value


def route_from_go(d: Mapping[str, Any] | None, what: str = "route") -> Route:
    """A decoded ``types.Route`` struct as the model's Route."""
    if d is None:
        raise DecodeError(ERR, f"{what}: null")
    return Route(
        dst=need_cidr(d["dst"], f"{what}.dst"),
        gw=d["gw"],
        mtu=d["mtu"],
        advmss=d["advmss"],
        priority=d["priority"],
        table=d["table"],
        scope=d["scope"],
    )


def routes_from_go(items: list[Any] | None, what: str = "routes") -> list[Route]:
    return [route_from_go(r, f"{what}[{i}]") for i, r in enumerate(items or [])]


def dns_from_go(d: Mapping[str, Any]) -> DNS:
    """A decoded ``types.DNS`` struct as the model's DNS."""
    return DNS(
        nameservers=list(d["nameservers"] or []),
        domain=d["domain"],
        search=list(d["search"] or []),
        options=list(d["options"] or []),
    )


def route_to_wire(r: Route) -> dict[str, Any]:
    """Go ``types.route`` field order and omitempty (``table``/``scope`` are pointers)."""
    out: dict[str, Any] = {"dst": r.dst.with_prefixlen}
    if r.gw is not None:
        out["gw"] = str(r.gw)
    if r.mtu:
        out["mtu"] = r.mtu
    if r.advmss:
        out["advmss"] = r.advmss
    if r.priority:
        out["priority"] = r.priority
    if r.table is not None:
        out["table"] = r.table
    if r.scope is not None:
        out["scope"] = r.scope
    return out


def copy_route(r: Route) -> Route:
    return Route(r.dst, r.gw, r.mtu, r.advmss, r.priority, r.table, r.scope)


def dns_to_wire(dns: DNS) -> dict[str, Any]:
    """Go ``types.DNS``: every field omitempty."""
    out: dict[str, Any] = {}
    if dns.nameservers:
        out["nameservers"] = list(dns.nameservers)
    if dns.domain:
        out["domain"] = dns.domain
    if dns.search:
        out["search"] = list(dns.search)
    if dns.options:
        out["options"] = list(dns.options)
    return out


def copy_dns(dns: DNS) -> DNS:
    return DNS(list(dns.nameservers), dns.domain, list(dns.search), list(dns.options))
