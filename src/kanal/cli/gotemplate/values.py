"""Go's values as docker's templates see them: missing keys, maps, and how
Go's fmt and encoding/json print decoded JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kanal.errors import InvalidConfig


class _Missing:
    """Go's invalid reflect.Value: a key that a map does not have."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING: Any = _Missing()


class GoMap(dict[str, Any]):
    """A dict that is a Go map whatever its keys (a table header, say)."""


class TemplateError(InvalidConfig):
    pass


_GO_NAMES = {  # docker's Go field name -> its JSON key, where the two differ
    "ID": "Id",
    "AuxAddress": "AuxiliaryAddresses",
    "HostIP": "HostIp",
    "DNS": "Dns",
    "DNSOptions": "DnsOptions",
    "DNSSearch": "DnsSearch",
    "CPUShares": "CpuShares",
    "CPUPeriod": "CpuPeriod",
    "CPUQuota": "CpuQuota",
    "CPURealtimePeriod": "CpuRealtimePeriod",
    "CPURealtimeRuntime": "CpuRealtimeRuntime",
    "CPUCount": "CpuCount",
    "CPUPercent": "CpuPercent",
}


#: Fields docker leaves out of the JSON when empty (``omitempty``), with the zero
#: value its Go struct still has: ``{{.Gateway}}`` of a subnet without one is "".
_OMITTED: dict[str, Any] = {
    "IPRange": "",
    "Gateway": "",
    "AuxiliaryAddresses": GoMap(),
    "Peers": (),
    "Services": GoMap(),
    "MacAddress": "",
    "StopSignal": "",
    "Shell": (),
}


def _exported(k: Any) -> bool:
    return isinstance(k, str) and k[:1].isupper() and k.isidentifier()


def is_struct(d: Mapping[str, Any]) -> bool:
    """Does this JSON object stand for a Go struct (rather than a map)?

    Docker's structs marshal to objects whose keys are all exported Go names
    (``Name``, ``IPAM``, ``EnableIPv6``); its maps (labels, options, containers by
    ID, networks by name, ports) have keys of any form. An empty object is a map.
    """
    if isinstance(d, GoMap):
        return False
    keys = [k for k in d if not (isinstance(k, str) and k.startswith("__"))]
    return bool(keys) and all(_exported(k) for k in keys)


def _public(d: Mapping[str, Any]) -> list[tuple[Any, Any]]:
    return [(k, v) for k, v in d.items() if not (isinstance(k, str) and k.startswith("__"))]


def go_type(v: Any, typed: bool = False) -> str:
    """The Go type of a value: as decoded from JSON (what docker's errors name, as
    they come from its retry on the raw JSON), or with ``typed`` as docker's own
    structs have it (``%T``: string maps and lists are ``map[string]string``,
    ``[]string``)."""
    if v is None or v is MISSING:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Mapping):
        strings = all(isinstance(x, str) for _, x in _public(v))
        if typed and strings and not is_struct(v):
            return "map[string]string"
        return "map[string]interface {}"
    if isinstance(v, list | tuple):
        strings = bool(v) and all(isinstance(x, str) for x in v)
        return "[]string" if typed and strings else "[]interface {}"
    return type(v).__name__


def _shortest(f: float) -> tuple[str, int]:
    """Shortest decimal digits of abs(f) and the decimal point position."""
    r = repr(abs(f))
    mant, _, exp = r.partition("e")
    ip, _, fp = mant.partition(".")
    digits = (ip + fp).lstrip("0")
    dp = len(ip) + (int(exp) if exp else 0)
    if not digits:
        return "0", 1
    dp -= len(ip + fp) - len((ip + fp).lstrip("0"))
    return digits.rstrip("0") or "0", dp


def _fmt_e(neg: bool, digits: str, dp: int, upper: bool = False) -> str:
    exp = dp - 1
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if exp < 0 else "+"
    e = f"{'E' if upper else 'e'}{sign}{abs(exp):02d}"
    return ("-" if neg else "") + mant + e


def _fmt_f(neg: bool, digits: str, dp: int) -> str:
    if dp <= 0:
        s = "0." + "0" * (-dp) + digits
    elif dp >= len(digits):
        s = digits + "0" * (dp - len(digits))
    else:
        s = digits[:dp] + "." + digits[dp:]
    return ("-" if neg else "") + s


def go_float(f: float) -> str:
    """Go's %v of a float64 (strconv 'g', shortest)."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    neg = f < 0 or (f == 0 and str(f).startswith("-"))
    digits, dp = _shortest(f)
    if f == 0:
        return "-0" if neg else "0"
    exp = dp - 1
    if exp < -4 or exp >= 6:  # strconv: "shortest" decides with a precision of 6
        return _fmt_e(neg, digits, dp)
    return _fmt_f(neg, digits, dp)


def _json_float(f: float) -> str:
    if f != f or f in (float("inf"), float("-inf")):
        raise TemplateError(f"json: unsupported value: {go_float(f)}")
    if f == 0:
        return "-0" if str(f).startswith("-") else "0"
    neg = f < 0
    digits, dp = _shortest(f)
    if abs(f) < 1e-6 or abs(f) >= 1e21:
        s = _fmt_e(neg, digits, dp)
        return s[:-2] + s[-1] if s[-4:-1] in ("e-0", "e+0") else s
    return _fmt_f(neg, digits, dp)


_JSON_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b"}
_JSON_ESC.update({"\f": "\\f", "\u2028": "\\u2028", "\u2029": "\\u2029"})
_HTML_ESC = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def _json_str(s: str, html: bool = False) -> str:
    out = []
    for c in s:
        e = _JSON_ESC.get(c) or (_HTML_ESC.get(c) if html else None)
        if e:
            out.append(e)
        elif c < " ":
            out.append(f"\\u{ord(c):04x}")
        elif "\ud800" <= c <= "\udfff":
            out.append("\\ufffd")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def go_json(v: Any, *, sort_maps: bool = True, html: bool = False) -> str:
    """Go's encoding/json, compact: objects that are Go maps in sorted key order
    (``sort_maps``), others in their own order (a struct's field order)."""
    if v is None or v is MISSING:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _json_float(v)
    if isinstance(v, str):
        return _json_str(v, html)
    if isinstance(v, Mapping):
        items = _public(v)
        if sort_maps and not is_struct(v):
            items.sort(key=lambda kv: str(kv[0]))
        body = ",".join(
            _json_str(str(k), html) + ":" + go_json(x, sort_maps=sort_maps, html=html)
            for k, x in items
        )
        return "{" + body + "}"
    if isinstance(v, list | tuple):
        return "[" + ",".join(go_json(x, sort_maps=sort_maps, html=html) for x in v) + "]"
    raise TemplateError(f"json: unsupported type: {go_type(v)}")


def go_print(v: Any) -> str:
    """Go's fmt %v of a decoded JSON value (nil inside a map or list is ``<nil>``)."""
    if v is None:
        return "<nil>"
    if v is MISSING:
        return "<no value>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, Mapping):
        items = sorted(_public(v), key=lambda kv: str(kv[0]))
        return "map[" + " ".join(f"{go_print(k)}:{go_print(x)}" for k, x in items) + "]"
    if isinstance(v, list | tuple):
        return "[" + " ".join(go_print(x) for x in v) + "]"
    if callable(v):
        return "<func>"
    return str(v)


def go_quote(s: str) -> str:
    """Go's strconv.Quote."""
    out = ['"']
    for c in s:
        if c == '"' or c == "\\":
            out.append("\\" + c)
        elif c in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(c)])
        elif c.isprintable():
            out.append(c)
        elif ord(c) < 0x80:
            out.append(f"\\x{ord(c):02x}")
        elif "\ud800" <= c <= "\udfff":
            out.append("\\ufffd")
        elif ord(c) <= 0xFFFF:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    out.append('"')
    return "".join(out)
