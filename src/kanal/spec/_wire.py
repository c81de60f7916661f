"""Field codecs shared by the result wire modules.

Decoding follows Go's ``encoding/json`` into the ``pkg/types`` structs: unknown keys
are ignored, ``null`` is the zero value, a wrong JSON type is an error (DecodeError
naming the field). Two deliberate differences: a missing ``address``/``ip``/``dst``
is an error here (Go would carry a zero IPNet and print "<nil>"), and keys match
exactly (Go also matches them case-insensitively).
"""

from __future__ import annotations

from collections.abc import Mapping

from kanal.errors import DecodeError
from kanal.spec.types import DNS, IPAddr, IPInterface, Route, parse_cidr, parse_ip

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def bad(path: str, want: str, value: Any) -> DecodeError:
    return DecodeError(
        "failed to decode CNI result", f"{path}: want {want}, got {type(value).__name__} {value!r}"
    )


def as_obj(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise bad(path, "an object", value)
    return value


def get_obj(d: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    v = d.get(key)
    if v is None:
        return None
    return as_obj(v, join(path, key))


def get_str(d: Mapping[str, Any], key: str, path: str) -> str:
    v = d.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise bad(join(path, key), "a string", v)
    return v


def get_int(d: Mapping[str, Any], key: str, path: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad(join(path, key), "an integer", v)
    return int(v)


def get_list(d: Mapping[str, Any], key: str, path: str) -> list[Any]:
    v = d.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise bad(join(path, key), "a list", v)
    return v


def get_str_list(d: Mapping[str, Any], key: str, path: str) -> list[str]:
    items = get_list(d, key, path)
    for i, s in enumerate(items):
        if not isinstance(s, str):
            raise bad(f"{join(path, key)}[{i}]", "a string", s)
    return list(items)


def get_ip(d: Mapping[str, Any], key: str, path: str) -> IPAddr | None:
    """An optional IP; "" and null mean unset (Go ``net.IP.UnmarshalText``)."""
    s = get_str(d, key, path)
    if s == "":
        return None
    try:
        return parse_ip(s)
    except DecodeError as e:
        raise DecodeError("failed to decode CNI result", f"{join(path, key)}: {e.msg}") from e


def get_cidr(d: Mapping[str, Any], key: str, path: str) -> IPInterface:
    v = d.get(key)
    if v is None:
        raise DecodeError("failed to decode CNI result", f"{join(path, key)}: missing")
    if not isinstance(v, str):
        raise bad(join(path, key), "a CIDR string", v)
    try:
        return parse_cidr(v)
    except DecodeError as e:
        raise DecodeError("failed to decode CNI result", f"{join(path, key)}: {e.msg}") from e


def route_from_wire(value: Any, path: str) -> Route:
    """``types.Route``: the same struct (all fields) in every result version."""
    d = as_obj(value, path)
    return Route(
        dst=get_cidr(d, "dst", path),
        gw=get_ip(d, "gw", path),
        mtu=get_int(d, "mtu", path) or 0,
        advmss=get_int(d, "advmss", path) or 0,
        priority=get_int(d, "priority", path) or 0,
        table=get_int(d, "table", path),
        scope=get_int(d, "scope", path),
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


def dns_from_wire(value: Any, path: str) -> DNS:
    if value is None:
        return DNS()
    d = as_obj(value, path)
    return DNS(
        nameservers=get_str_list(d, "nameservers", path),
        domain=get_str(d, "domain", path),
        search=get_str_list(d, "search", path),
        options=get_str_list(d, "options", path),
    )


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
