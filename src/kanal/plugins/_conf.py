"""Reading a plugin's config: one gojson struct spec per plugin, decoded with Go's rules.

Each plugin describes its Go ``NetConf`` struct as a :class:`~kanal.spec.gojson.Struct`
(:data:`kanal.spec.gotypes.NETCONF` extended with its own keys) and reads the config
with :func:`load`: keys matched as ``encoding/json`` does, unknown keys ignored, Go's
rules for numbers, null and duplicates, Go's error text. ADD, CHECK and the rest
decode strictly; DEL decodes leniently (``lenient=True``: a value of the wrong type
keeps its zero value) and skips validation, so the DEL of an ADD that failed on its
config or its capabilities still tears down what the other plugins of the chain made.
"""

from __future__ import annotations

from kanal.errors import InvalidConfig
from kanal.spec import gojson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from kanal.skel.cmdargs import CmdArgs
    from kanal.spec.types import DNS, Result

# runtimeConfig / args.cni struct carrying only a MAC (bridge, macvlan, tap, ...).
MAC_ONLY = gojson.Struct("", [("mac", gojson.STRING)], pkg="")

_HEX = frozenset("0123456789abcdefABCDEF")


def _mac_ok(mac: str) -> bool:
    """``re.match(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\\Z", mac)``, by hand (importing re
    costs a plugin exec ~4 ms)."""
    return len(mac) == 17 and all(c == ":" if i % 3 == 2 else c in _HEX for i, c in enumerate(mac))


def load(
    spec: gojson.Struct,
    args: CmdArgs,
    *,
    lenient: bool = False,
    what: str = "failed to load netconf",
) -> dict[str, Any]:
    """The plugin's stdin decoded into ``spec`` (a dict keyed by JSON field names).

    Raises:
        InvalidConfig: (unless ``lenient``) Go's decode error, after ``what``.
    """
    if lenient:
        out, _ = gojson.decode_lenient(spec, args.conf)
    else:
        out = gojson.decode(spec, args.conf, what)
    conf: dict[str, Any] = out
    return conf


def valid_mac(mac: str) -> str:
    """Normalise a MAC (lower case) or raise InvalidConfig."""
    if not _mac_ok(mac):
        raise InvalidConfig(f"invalid MAC address {mac!r}")
    return mac.lower()


def valid_ifname(name: str, what: str = "interface name") -> str:
    if not name or len(name) > 15 or name in (".", "..") or any(c in name for c in "/: \t\n"):
        raise InvalidConfig(f"invalid {what} {name!r}")
    return name


def dns_of(conf: Mapping[str, Any]) -> DNS | None:
    """The decoded config's ``dns`` as a result DNS, or None when it is empty."""
    from kanal.spec._wire import dns_from_go

    dns = dns_from_go(conf["dns"])
    return None if dns.is_empty() else dns


def prev_result(conf: Mapping[str, Any], args: CmdArgs) -> Result | None:
    """The decoded config's ``prevResult`` as a result, or None when there is none.

    Decoded as Go does (``version.ParsePrevResult``: through a map, the config's
    version standing in for a missing one).

    Raises:
        DecodeError, IncompatibleVersion: a prevResult that does not decode.
    """
    raw = conf["prevResult"]
    if raw is None:
        return None
    from kanal.spec.convert import parse_result

    return parse_result(raw, args.cni_version)
