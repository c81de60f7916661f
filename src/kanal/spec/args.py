"""Identifier validation and ``CNI_ARGS`` parsing.

Go reference: ``pkg/utils/utils.go`` (container ID, network name, interface name),
``pkg/types/args.go`` (``LoadArgs``) and ``cnitool/cmd/root.go`` (strict parsing).
"""

from __future__ import annotations

from kanal.errors import InvalidEnv
from kanal.spec._go import quote, quote_list

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "CONTAINER_ID_RE",
    "MAX_CONTAINER_ID_LEN",
    "MAX_IFNAME_LEN",
    "load_args",
    "parse_cni_args",
    "validate_container_id",
    "validate_ifname",
]

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ID_REST = _ALNUM | frozenset("_.-")


class _IdPattern:
    """``re.compile(r"\\A[a-zA-Z0-9][a-zA-Z0-9_.\\-]*\\Z")``'s ``match``, checked by hand:
    every plugin exec validates an ID, and importing ``re`` costs it ~4 ms."""

    pattern = r"\A[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z"

    def match(self, s: str) -> bool:
        return isinstance(s, str) and s[:1] in _ALNUM and bool(s) and all(c in _ID_REST for c in s)


# Anchored (\A..\Z): not even a trailing newline passes. The first character can be
# neither "." nor "/", so "." and ".." never match and a matching ID is always a
# single safe path component.
CONTAINER_ID_RE = _IdPattern()

MAX_IFNAME_LEN = 15  # IFNAMSIZ - 1

# A container ID must fit, with an interface name, in one file name (255 bytes): the
# tuning plugin's backup is "<id>_<ifname>.json". Go has no limit and then fails on
# whatever does not fit; kanal checks it up front, the same way for every command,
# so a DEL never fails on an ID its ADD accepted.
MAX_CONTAINER_ID_LEN = 255 - len("_") - MAX_IFNAME_LEN - len(".json")

# Go's unicode.IsSpace (Latin-1 spaces plus the White_Space property).
_GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def validate_container_id(cid: str) -> None:
    """Check ``CNI_CONTAINERID`` as Go skel does.

    Raises:
        InvalidEnv: code 3 "missing containerID" when empty (Go's
            ErrUnknownContainer); code 4 "invalid characters in containerID", or
            (kanal's) "containerID is too long" past :data:`MAX_CONTAINER_ID_LEN`.
    """
    if cid == "":
        raise InvalidEnv("missing containerID", code=3)
    if not CONTAINER_ID_RE.match(cid):
        raise InvalidEnv("invalid characters in containerID", cid)
    if len(cid) > MAX_CONTAINER_ID_LEN:
        raise InvalidEnv(
            "containerID is too long",
            f"{len(cid)} characters, at most {MAX_CONTAINER_ID_LEN} allowed",
        )


def validate_network_name(name: str) -> None:
    """Check a network name (Go ``utils.ValidateNetworkName`` / skel).

    (Here rather than in :mod:`kanal.spec.netconf`, which re-exports it, so that
    host-local's exec path does not load the whole config parser.)

    Raises:
        InvalidConfig: "missing network name" or "invalid characters found in
            network name" (details: the name).
    """
    from kanal.errors import InvalidConfig

    if name == "":
        raise InvalidConfig("missing network name")
    if not CONTAINER_ID_RE.match(name):
        raise InvalidConfig("invalid characters found in network name", name)


def validate_ifname(name: str) -> None:
    """Check ``CNI_IFNAME``: 1..15 bytes, not "." or "..", no "/", ":" or whitespace.

    Raises:
        InvalidEnv: code 4 with Go's message for the rule broken.
    """
    if name == "":
        raise InvalidEnv("interface name is empty")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_IFNAME_LEN:
        raise InvalidEnv(
            "interface name is too long",
            f"interface name should be less than {MAX_IFNAME_LEN + 1} characters",
        )
    if name in (".", ".."):
        raise InvalidEnv("interface name is . or ..")
    if any(c == "/" or c == ":" or c in _GO_SPACE for c in name):
        raise InvalidEnv("interface name contains / or : or whitespace characters")


def parse_cni_args(s: str, *, strict: bool = False) -> list[tuple[str, str]]:
    """Split ``K=V;K2=V2`` into pairs, in order (duplicates kept).

    Every pair must contain exactly one "=" (Go ``LoadArgs``); ``strict`` also
    requires a non-empty key and value (cnitool). ``""`` gives no pairs.

    Raises:
        InvalidEnv: ``ARGS: invalid pair "x"`` (strict: ``invalid CNI_ARGS pair "x"``).
    """
    if s == "":
        return []
    pairs: list[tuple[str, str]] = []
    for pair in s.split(";"):
        kv = pair.split("=")
        if strict:
            if len(kv) != 2 or not kv[0] or not kv[1]:
                raise InvalidEnv(f"invalid CNI_ARGS pair {quote(pair)}")
        elif len(kv) != 2:
            raise InvalidEnv(f"ARGS: invalid pair {quote(pair)}")
        pairs.append((kv[0], kv[1]))
    return pairs


def _parse_go_bool(pair: str, value: str) -> bool:
    v = value.lower()
    if v in ("1", "true"):
        return True
    if v in ("0", "false"):
        return False
    raise InvalidEnv(
        f"ARGS: error parsing value of pair {quote(pair)}: "
        f"boolean unmarshal error: invalid input {v}"
    )


def load_args(s: str, known: Iterable[str]) -> dict[str, str]:
    """``CNI_ARGS`` into the ``known`` keys, with Go ``LoadArgs`` rules.

    A key outside ``known`` is an error unless ``IgnoreUnknown`` is 1/true (any
    case; the last occurrence counts). ``IgnoreUnknown`` itself is always allowed
    and is returned only if it is in ``known``. Kubelet's ``K8S_POD_*`` keys are
    ordinary unknown keys: accepted only with ``IgnoreUnknown`` unless known.
    Later duplicates win. Go reports these as plain errors (code 999 through skel);
    here they are InvalidEnv (code 4), the spec's code for bad CNI_* variables.

    Raises:
        InvalidEnv: a malformed pair, a bad IgnoreUnknown value, or unknown keys
            (``ARGS: unknown args ["K=V"]``).
    """
    known_set = set(known)
    out: dict[str, str] = {}
    unknown: list[str] = []
    ignore_unknown = False
    for key, value in parse_cni_args(s):
        if key == "IgnoreUnknown":
            ignore_unknown = _parse_go_bool(f"{key}={value}", value)
            if key in known_set:
                out[key] = value
        elif key in known_set:
            out[key] = value
        else:
            unknown.append(f"{key}={value}")
    if unknown and not ignore_unknown:
        raise InvalidEnv(f"ARGS: unknown args {quote_list(unknown)}")
    return out
