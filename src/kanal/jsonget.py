"""Typed reads of decoded JSON objects: the one set of getters every JSON reader uses.

Each getter reads ``d[key]`` from a decoded object and checks its type. ``where``
names the object the key is in (a prefix such as ``"IPAM."``), so a message reads
``invalid IPAM.Subnet: want a string``. Missing and ``null`` are the same (Go's zero
value): an optional getter returns its default, a required one fails.

A failure raises ``error`` (a :class:`~kanal.errors.KanalError` class; the reader's
place in the error taxonomy, InvalidConfig by default) with that text. A reader whose
wire format words its errors otherwise passes ``bad(key, want, value)``, which
returns the exception to raise (``want`` is the wording below: "a string", "an
object"...).

Lean (no typing, dataclasses, json or re at run time): config readers import it.
"""

from __future__ import annotations

from kanal.errors import InvalidConfig

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from kanal.errors import KanalError

    Bad = Callable[[str, str, Any], KanalError]

__all__ = [
    "obj",
    "opt_bool",
    "opt_cidr",
    "opt_int",
    "opt_ip",
    "opt_obj",
    "opt_str",
    "req_str",
    "str_list",
]


def _fail(
    key: str, want: str, value: Any, where: str, error: type[KanalError], bad: Bad | None
) -> KanalError:
    if bad is not None:
        return bad(key, want, value)
    return error(f"invalid {where}{key}: want {want}")


def obj(
    value: Any, what: str = "the request body", *, error: type[KanalError] = InvalidConfig
) -> dict[str, Any]:
    """``value`` itself, which must be a JSON object ("<what> must be a JSON object")."""
    if not isinstance(value, dict):
        raise error(f"{what} must be a JSON object")
    return value


def _opt(
    d: Mapping[str, Any],
    key: str,
    where: str,
    default: Any,
    ok: Callable[[Any], bool],
    want: str,
    error: type[KanalError],
    bad: Bad | None,
) -> Any:
    """``d[key]`` if ``ok`` says it is of the wanted type; ``default`` when missing or
    null; else the failure."""
    v = d.get(key)
    if v is None:
        return default
    if not ok(v):
        raise _fail(key, want, v, where, error, bad)
    return v


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_obj(v: Any) -> bool:
    return isinstance(v, dict)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def opt_str(
    d: Mapping[str, Any],
    key: str,
    where: str = "",
    *,
    default: str = "",
    error: type[KanalError] = InvalidConfig,
    bad: Bad | None = None,
) -> str:
    """A string, or ``default`` when missing or null."""
    out: str = _opt(d, key, where, default, _is_str, "a string", error, bad)
    return out


def req_str(
    d: Mapping[str, Any],
    key: str,
    where: str = "",
    *,
    error: type[KanalError] = InvalidConfig,
    bad: Bad | None = None,
) -> str:
    """A non-empty string ("<where><key> is required (a non-empty string)")."""
    v = d.get(key)
    if not isinstance(v, str) or not v:
        if bad is not None:
            raise bad(key, "a non-empty string", v)
        raise error(f"{where}{key} is required (a non-empty string)")
    return v


def opt_bool(
    d: Mapping[str, Any],
    key: str,
    default: bool = False,
    where: str = "",
    *,
    error: type[KanalError] = InvalidConfig,
    bad: Bad | None = None,
) -> bool:
    """true or false, or ``default`` when missing or null."""
    out: bool = _opt(d, key, where, default, _is_bool, "true or false", error, bad)
    return out


def opt_int(
    d: Mapping[str, Any],
    key: str,
    default: int = 0,
    where: str = "",
    *,
    lo: int | None = None,
    hi: int | None = None,
    error: type[KanalError] = InvalidConfig,
    bad: Bad | None = None,
) -> int:
    """An integer (not a bool, not a fraction) within ``lo``..``hi`` when given, or
    ``default`` when missing or null."""
    v: int = _opt(d, key, where, default, _is_int, "an integer", error, bad)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise _fail(key, f"an integer from {lo} to {hi}", v, where, error, bad)
    return v


def opt_obj(
    d: Mapping[str, Any],
    key: str,
    where: str = "",
    *,
    error: type[KanalError] = InvalidConfig,
    bad: Bad | None = None,
) -> dict[str, Any]:
    """An object, or ``{}`` when missing or null."""
    out: dict[str, Any] = _opt(d, key, where, {}, _is_obj, "an object", error, bad)
    return out


def str_list(
    d: Mapping[str, Any],
    key: str,
    where: str = "",
    *,
    error: type[KanalError] = InvalidConfig,
    bad: Bad | None = None,
) -> list[str]:
    """A list of strings (a copy), or ``[]`` when missing or null."""
    out: list[str] = _opt(d, key, where, [], _is_str_list, "a list of strings", error, bad)
    return list(out)


def opt_ip(
    d: Mapping[str, Any],
    key: str,
    where: str = "",
    *,
    error: type[KanalError] = InvalidConfig,
    bad: Bad | None = None,
) -> str:
    """An IP address as written, or "" when missing, null or empty."""
    v = opt_str(d, key, where, error=error, bad=bad)
    if v:
        import ipaddress  # lazy: only readers of addresses pay for it

        try:
            ipaddress.ip_address(v)
        except ValueError:
            raise _fail(key, "an IP address", v, where, error, bad) from None
    return v


def opt_cidr(
    d: Mapping[str, Any],
    key: str,
    where: str = "",
    *,
    error: type[KanalError] = InvalidConfig,
    bad: Bad | None = None,
) -> str:
    """An address with a prefix (``10.0.0.2/24``) as written, or "" when missing,
    null or empty."""
    v = opt_str(d, key, where, error=error, bad=bad)
    if v:
        import ipaddress  # lazy: only readers of addresses pay for it

        try:
            ipaddress.ip_interface(v)
        except ValueError:
            raise _fail(key, "an address with a prefix", v, where, error, bad) from None
        if "/" not in v:
            raise _fail(key, "an address with a prefix", v, where, error, bad)
    return v
