"""Typed reads of REST request bodies and query strings: one place for every JSON field.

Each getter returns the field as its type or raises InvalidConfig naming it
(``where`` prefixes nested fields: ``EndpointConfig.IPAMConfig.``), so request
parsers never handle raw JSON themselves. The plain typed reads are
:mod:`kanal.jsonget`'s (every JSON reader's); what is added here is the API's own
rules (no control characters, kanal's address and label checks).
"""

from __future__ import annotations

from typing import Any

from kanal import jsonget, validate
from kanal.jsonget import obj, opt_bool, opt_obj, opt_str, str_list

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


def req_str(body: dict[str, Any], key: str) -> str:
    """A required non-empty string without control characters."""
    return validate.no_control(jsonget.req_str(body, key), key)


def opt_ip(body: dict[str, Any], key: str, where: str = "") -> str:
    """An optional IP address (checked); "" when absent."""
    v = opt_str(body, key, where)
    return validate.ip(v, f"{where}{key}") if v else ""


def str_map(body: dict[str, Any], key: str, what: str = "") -> dict[str, str]:
    """An optional object of strings (labels, options), checked as kanal.validate does."""
    return validate.str_map(body.get(key), what or key)


def query_one(query: dict[str, list[str]], key: str, default: str) -> str:
    """A query parameter's last value (``default`` when absent)."""
    values = query.get(key) or [default]
    return values[-1]
