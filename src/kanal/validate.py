"""The rules every outside value meets before kanal uses it (one set, shared).

kanald's REST API, the engine behind it (sandboxes, networks), the Docker plugin
server and the CLI all check names, hostnames, resolver settings, addresses and
request bodies here, so that one value is judged the same way wherever it comes
in. Every check returns the value it accepted (unchanged) or raises
:class:`~kanal.errors.InvalidConfig` (:class:`~kanal.errors.DecodeError` for a
body that is not JSON) with a message naming the field.

Why these rules (README's "Input rules and limits" lists them for users):

- No control characters (C0, DEL, C1, U+2028/U+2029) anywhere a value becomes a
  line of a file (/etc/hosts, resolv.conf), a rule comment or a path: a newline
  in ``--dns-search`` would otherwise add a ``nameserver`` line.
- Patterns are matched whole (``fullmatch``): ``$`` also matches before a
  trailing newline, so ``^...$`` lets ``"web\\n"`` through.
- A hostname is RFC 1123 (labels of letters, digits and inner hyphens, 63 per
  label, 253 in all) and, since it becomes the sandbox's UTS name, at most 64
  bytes: longer is refused by ``sethostname`` only once the process starts.
- A gateway is a host address of its subnet: not the network address, not the
  IPv4 broadcast address, not an auxiliary (reserved) address.

Pure and stdlib only: the CLI imports it without the engine.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Protocol

from kanal.errors import DecodeError, InvalidConfig, TooLarge

__all__ = [
    "HOSTNAME_MAX",
    "LABEL_MAX",
    "MAX_BODY",
    "MAX_DEPTH",
    "NAME_MAX",
    "UTS_MAX",
    "alias",
    "argv",
    "check_gateway",
    "decode_json",
    "default_hostname",
    "dns_name",
    "dns_option",
    "env",
    "extra_host",
    "has_control",
    "hostname",
    "ip",
    "json_depth",
    "name",
    "no_control",
    "parse_bool",
    "parse_int",
    "parse_seconds",
    "sandbox",
    "str_map",
    "workdir",
]

#: Docker's longest network/container name accepted here.
NAME_MAX = 128
#: RFC 1035: octets of one label, characters of a whole name.
LABEL_MAX = 63
HOSTNAME_MAX = 253
#: The kernel's HOST_NAME_MAX for the UTS hostname (sethostname's limit).
UTS_MAX = 64
#: Largest REST/plugin request body, and deepest JSON nesting, read.
MAX_BODY = 1 << 20
MAX_DEPTH = 32

# Docker's rule for network and container names (daemon/names: RestrictedNamePattern).
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
# One RFC 1123 label: letters, digits, hyphens inside.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
# A search domain's label may also hold "_" (service labels such as _tcp).
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")
# resolv.conf options: "rotate", "no-check-names", "ndots:2", "timeout:1".
_OPTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(?::[A-Za-z0-9_.-]+)?")
_OPTION_MAX = 64
_ENV_KEY_MAX = 4096


def has_control(value: str) -> bool:
    """True if ``value`` holds a control character, a Unicode line/paragraph separator
    or a lone surrogate (from a ``\\udXXX`` escape: no UTF-8 for it)."""
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs") for c in value)


def _no_surrogate(value: str) -> bool:
    return not any("\ud800" <= c <= "\udfff" for c in value)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidConfig(f"invalid {what}: want a string, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", list: "a list"}.get(
        type(value), "an object" if isinstance(value, dict) else type(value).__name__
    )


def no_control(value: Any, what: str) -> str:
    """``value`` is a string without control characters."""
    text = _text(value, what)
    if has_control(text):
        raise InvalidConfig(f"invalid {what} {text!r}: control characters are not allowed")
    return text


def name(value: Any, what: str = "network") -> str:
    """A network, container or host name: docker's ``[a-zA-Z0-9][a-zA-Z0-9_.-]*``."""
    text = _text(value, f"{what} name")
    if not _NAME.fullmatch(text) or len(text) > NAME_MAX:
        raise InvalidConfig(
            f"invalid {what} name {text!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed "
            f"(at most {NAME_MAX} characters)"
        )
    return text


def alias(value: Any) -> str:
    """A DNS alias of an endpoint: a name by docker's rule."""
    return name(value, "alias")


def _labels(text: str, what: str, label: re.Pattern[str]) -> str:
    body = text[:-1] if text.endswith(".") else text
    if not body:
        raise InvalidConfig(f"invalid {what} {text!r}: empty")
    if len(body) > HOSTNAME_MAX:
        raise InvalidConfig(f"invalid {what} {text!r}: longer than {HOSTNAME_MAX} characters")
    for part in body.split("."):
        if len(part) > LABEL_MAX:
            raise InvalidConfig(
                f"invalid {what} {text!r}: label {part!r} is longer than {LABEL_MAX} characters"
            )
        if not label.fullmatch(part):
            raise InvalidConfig(
                f"invalid {what} {text!r}: labels are letters, digits and inner hyphens"
            )
    return text


def dns_name(value: Any, what: str = "DNS name") -> str:
    """A domain name (``--dns-search``): labels ≤ 63, ≤ 253 in all, one trailing dot allowed."""
    text = no_control(value, what)
    return _labels(text, what, _DOMAIN_LABEL)


def hostname(value: Any) -> str:
    """A sandbox's hostname: RFC 1123, and at most 64 characters (the UTS name's room)."""
    text = no_control(value, "hostname")
    if text.endswith("."):
        raise InvalidConfig(f"invalid hostname {text!r}: no trailing dot")
    _labels(text, "hostname", _LABEL)
    if len(text) > UTS_MAX:
        raise InvalidConfig(
            f"invalid hostname {text!r}: longer than {UTS_MAX} characters (the kernel's limit)"
        )
    return text


def default_hostname(sandbox_name: str, sandbox_id: str) -> str:
    """A sandbox's hostname when none is given: its name, or its short id when the
    name does not fit the UTS hostname."""
    return sandbox_name if len(sandbox_name) <= UTS_MAX else sandbox_id[:12]


def dns_option(value: Any) -> str:
    """One resolv.conf option (``--dns-option``): ``NAME`` or ``NAME:VALUE``, no spaces."""
    text = no_control(value, "DNS option")
    if not _OPTION.fullmatch(text) or len(text) > _OPTION_MAX:
        raise InvalidConfig(f"invalid DNS option {text!r}: want NAME or NAME:VALUE")
    return text


def ip(value: Any, what: str = "IP address") -> str:
    """An IPv4 or IPv6 address (an IPv6 zone is allowed, but no space or control in it)."""
    text = _text(value, what)
    if has_control(text) or any(c.isspace() for c in text):
        raise InvalidConfig(f"invalid {what} {text!r}")
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise InvalidConfig(f"invalid {what} {text!r}") from None
    return text


#: ``--add-host NAME:host-gateway``: the host's address as the sandbox sees it
HOST_GATEWAY = "host-gateway"


def extra_host(value: Any) -> tuple[str, str]:
    """``--add-host NAME:IP`` (or ``NAME:host-gateway``) as (name, ip)."""
    text = _text(value, "--add-host")
    host, _, addr = text.partition(":")
    try:
        name(host, "host")
        if addr != HOST_GATEWAY:
            ip(addr)
    except InvalidConfig:
        raise InvalidConfig(
            f"invalid --add-host {text!r}: want NAME:IP or NAME:host-gateway"
        ) from None
    return host, addr


def env(key: Any, value: Any) -> tuple[str, str]:
    """One environment variable: a key without ``=`` or NUL, a value without NUL."""
    k = _text(key, "environment variable name")
    v = _text(value, f"value of {k!r}")
    if not k or "=" in k or "\0" in k or len(k) > _ENV_KEY_MAX or has_control(k):
        raise InvalidConfig(f"invalid environment variable name {k!r}")
    if "\0" in v or not _no_surrogate(v):
        raise InvalidConfig(f"invalid value of {k!r}: NUL or a lone surrogate")
    return k, v


def argv(value: Any) -> list[str]:
    """A command: a non-empty list of strings without NUL (execve's rule)."""
    if not isinstance(value, list) or not value or not all(isinstance(x, str) for x in value):
        raise InvalidConfig("Cmd must be a non-empty list of strings")
    if not value[0] or any("\0" in x or not _no_surrogate(x) for x in value):
        raise InvalidConfig("invalid Cmd: an empty program name, a NUL or a lone surrogate")
    return list(value)


def workdir(value: Any) -> str:
    """``-w``: empty or an absolute path without control characters."""
    text = no_control(value, "working directory")
    if text and not text.startswith("/"):
        raise InvalidConfig(f"invalid working directory {text!r}: want an absolute path")
    return text


def str_map(value: Any, what: str) -> dict[str, str]:
    """An object of strings (labels, options): keys non-empty, nothing with control characters."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidConfig(f"invalid {what}: want an object of strings")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidConfig(f"invalid {what}: want an object of strings")
        if not k:
            raise InvalidConfig(f"invalid {what}: an empty key")
        no_control(k, f"{what} key")
        no_control(v, f"{what} value of {k!r}")
        out[k] = v
    return out


class SandboxFields(Protocol):
    """What :func:`sandbox` reads (kanal.engine.sandboxes.SandboxSpec has it)."""

    argv: list[str]
    name: str
    hostname: str
    dns: list[str]
    dns_search: list[str]
    dns_options: list[str]
    extra_hosts: list[str]
    env: dict[str, str]
    workdir: str


def sandbox(spec: SandboxFields) -> None:
    """Every user-given field of a sandbox (``kanal run``), as the API and the engine check it.

    The values end up in /etc/hosts, resolv.conf, the UTS hostname, launch.json
    and execve: nothing may add a line or be refused only when the process starts.
    """
    argv(spec.argv)
    if spec.name:
        name(spec.name, "container")
    if spec.hostname:
        hostname(spec.hostname)
    for a in spec.dns:
        ip(a, "DNS server")
    for d in spec.dns_search:
        dns_name(d, "DNS search domain")
    for o in spec.dns_options:
        dns_option(o)
    for h in spec.extra_hosts:
        extra_host(h)
    for k, v in spec.env.items():
        env(k, v)
    workdir(spec.workdir)


def check_gateway(subnet: str, gateway: str, aux: Mapping[str, str]) -> None:
    """A gateway is a host of its subnet: not its network, broadcast or an aux address.

    ``subnet`` is canonical; ``gateway`` and ``aux`` values are valid addresses in it.
    """
    net = ipaddress.ip_network(subnet)
    gw = ipaddress.ip_address(gateway)
    if gw == net.network_address:
        raise InvalidConfig(f"invalid gateway {gateway}: it is the network address of {subnet}")
    if isinstance(net, ipaddress.IPv4Network) and gw == net.broadcast_address:
        raise InvalidConfig(f"invalid gateway {gateway}: it is the broadcast address of {subnet}")
    for key, value in aux.items():
        if ipaddress.ip_address(value) == gw:
            raise InvalidConfig(f"invalid gateway {gateway}: it is the aux-address {key!r}")


def parse_bool(value: str, what: str) -> bool:
    """Go's ``strconv.ParseBool`` (what docker's API reads ``force=`` with)."""
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise InvalidConfig(f"invalid {what} {value!r}: want true or false")


def parse_seconds(value: str, what: str, *, maximum: float = 86400.0) -> float:
    """A duration in seconds, 0 to ``maximum`` (``t=`` of stop)."""
    try:
        f = float(value)
    except ValueError:
        raise InvalidConfig(f"invalid {what} {value!r}: want seconds") from None
    if not math.isfinite(f) or not 0 <= f <= maximum:
        raise InvalidConfig(f"invalid {what} {value!r}: want 0 to {maximum:g} seconds")
    return f


def parse_int(value: Any, what: str, lo: int, hi: int) -> int:
    """A JSON integer in [lo, hi] (not a boolean, a float or a string)."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidConfig(f"invalid {what} {value!r}: want an integer from {lo} to {hi}")
    return int(value)


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in ``text`` (strings skipped), without parsing it."""
    depth = deepest = 0
    in_str = esc = False
    for c in text:
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def decode_json(raw: bytes, *, max_depth: int = MAX_DEPTH, max_size: int = MAX_BODY) -> Any:
    """A request body: strict UTF-8 JSON, nested at most ``max_depth`` (empty is ``{}``).

    Raises:
        TooLarge: more than ``max_size`` bytes.
        DecodeError: not UTF-8, not JSON, nested too deep, or NaN/Infinity.
    """
    if len(raw) > max_size:
        raise TooLarge(f"request body too large: {len(raw)} bytes (at most {max_size})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError("invalid request body: not UTF-8", str(e)) from None
    if not text.strip():
        return {}
    if json_depth(text) > max_depth:
        raise DecodeError(f"invalid JSON in the request body: nested deeper than {max_depth}")

    def constant(c: str) -> Any:
        raise ValueError(f"{c} is not JSON")

    try:
        return json.loads(text, parse_constant=constant)
    except ValueError as e:  # JSONDecodeError, NaN, or too many digits for int()
        raise DecodeError("invalid JSON in the request body", str(e)) from None
