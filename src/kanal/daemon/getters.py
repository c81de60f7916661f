"""Typed reads of REST request bodies and query strings: one place for every JSON field.

Each getter returns the field as its type or raises InvalidConfig naming it
(``where`` prefixes nested fields: ``EndpointConfig.IPAMConfig.``), so request
parsers never handle raw JSON themselves.
"""

from __future__ import annotations

from typing import Any

from kanal import validate
from kanal.errors import InvalidConfig

__all__ = [
    "obj",
    "opt_bool",
    "opt_ip",
    "opt_obj",
    "opt_str",
    "query_one",
    "req_str",
    "str_list",
    "str_map",
]


def obj(body: Any) -> dict[str, Any]:
    """The request body, which must be a JSON object."""
    if not isinstance(body, dict):
        raise InvalidConfig("the request body must be a JSON object")
    return body


def req_str(body: dict[str, Any], key: str) -> str:
    """A required non-empty string without control characters."""
    v = body.get(key)
    if not isinstance(v, str) or not v:
        raise InvalidConfig(f"{key} is required (a non-empty string)")
    return validate.no_control(v, key)


def opt_str(body: dict[str, Any], key: str, where: str = "") -> str:
    v = body.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise InvalidConfig(f"invalid {where}{key}: want a string")
    return v


def opt_obj(body: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    v = body.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise InvalidConfig(f"invalid {where}{key}: want an object")
    return v


def opt_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    v = body.get(key)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise InvalidConfig(f"invalid {key}: want true or false")
    return v


def opt_ip(body: dict[str, Any], key: str, where: str = "") -> str:
    """An optional IP address (checked); "" when absent."""
    v = opt_str(body, key, where)
    return validate.ip(v, f"{where}{key}") if v else ""


def str_list(body: dict[str, Any], key: str, where: str = "") -> list[str]:
    v = body.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InvalidConfig(f"invalid {where}{key}: want a list of strings")
    return list(v)


def str_map(body: dict[str, Any], key: str, what: str = "") -> dict[str, str]:
    """An optional object of strings (labels, options), checked as kanal.validate does."""
    return validate.str_map(body.get(key), what or key)


def query_one(query: dict[str, list[str]], key: str, default: str) -> str:
    """A query parameter's last value (``default`` when absent)."""
    values = query.get(key) or [default]
    return values[-1]
