"""Typed reads of plugin config keys, with Go-like "failed to load netconf" errors."""

from __future__ import annotations

from kanal.errors import InvalidConfig

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from kanal.spec.types import DNS

_HEX = frozenset("0123456789abcdefABCDEF")


def _mac_ok(mac: str) -> bool:
    """``re.match(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\\Z", mac)``, by hand (importing re
    costs a plugin exec ~4 ms)."""
    return len(mac) == 17 and all(c == ":" if i % 3 == 2 else c in _HEX for i, c in enumerate(mac))


def _bad(key: str, want: str, value: Any) -> InvalidConfig:
    return InvalidConfig(
        "failed to load netconf", f"{key!r} must be {want}, got {type(value).__name__} {value!r}"
    )


def get_bool(conf: Mapping[str, Any], key: str, default: bool = False) -> bool:
    v = conf.get(key, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise _bad(key, "a boolean", v)
    return v


def get_int(conf: Mapping[str, Any], key: str, default: int = 0) -> int:
    v = conf.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(key, "an integer", v)
    return int(v)


def get_str(conf: Mapping[str, Any], key: str, default: str = "") -> str:
    v = conf.get(key, default)
    if v is None:
        return default
    if not isinstance(v, str):
        raise _bad(key, "a string", v)
    return v


def get_dict(conf: Mapping[str, Any], key: str) -> dict[str, Any]:
    v = conf.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _bad(key, "an object", v)
    return v


def get_list(conf: Mapping[str, Any], key: str) -> list[Any]:
    v = conf.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise _bad(key, "a list", v)
    return v


def valid_mac(mac: str) -> str:
    """Normalise a MAC (lower case) or raise InvalidConfig."""
    if not _mac_ok(mac):
        raise InvalidConfig(f"invalid MAC address {mac!r}")
    return mac.lower()


def valid_ifname(name: str, what: str = "interface name") -> str:
    if not name or len(name) > 15 or name in (".", "..") or any(c in name for c in "/: \t\n"):
        raise InvalidConfig(f"invalid {what} {name!r}")
    return name


def get_dns(conf: Mapping[str, Any]) -> DNS | None:
    """The config's ``dns`` object as a result DNS, or None when absent or empty."""
    from kanal.spec.types import DNS

    d = get_dict(conf, "dns")
    if not d:
        return None
    return DNS(
        nameservers=list(d.get("nameservers") or []),
        domain=str(d.get("domain") or ""),
        search=list(d.get("search") or []),
        options=list(d.get("options") or []),
    )
