"""CNI spec versions: parsing, comparison, the plugin-side check and the VERSION reply.

Go reference: ``pkg/version`` (``plugin.go``, ``reconcile.go``, ``version.go``) and
``pkg/invoke/exec.go`` (``GetVersionInfo``).
"""

from __future__ import annotations

from kanal.errors import DecodeError, IncompatibleVersion, KanalError
from kanal.spec._go import loads, quote, quote_list

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

__all__ = [
    "ALL_VERSIONS",
    "CURRENT",
    "check_supported",
    "decode_version_reply",
    "highest_version",
    "legacy_supported_versions",
    "parse_version",
    "version_ge",
    "version_gt",
    "version_reply",
]

ALL_VERSIONS: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
CURRENT = "1.1.0"

_DIGITS = frozenset("0123456789")


def _atoi_ok(part: str) -> bool:
    """strconv.Atoi's syntax, ``\\A[+-]?[0-9]+\\Z``: optional sign, ASCII digits only."""
    digits = part[1:] if part[:1] in ("+", "-") else part
    return bool(digits) and all(c in _DIGITS for c in digits)


_PART_NAMES = ("major", "minor", "micro")


def parse_version(v: str) -> tuple[int, int, int]:
    """Parse a CNI version like Go ``version.ParseVersion``.

    ``""`` means 0.1.0 (a config without ``cniVersion``); missing minor/micro parts
    are 0 (``"1"`` is 1.0.0).

    Raises:
        DecodeError: more than three parts or a part that is not an integer.
    """
    if v == "":
        return (0, 1, 0)
    parts = v.split(".")
    if len(parts) >= 4:
        raise DecodeError(f"invalid version {quote(v)}: too many parts")
    nums = [0, 0, 0]
    for i, part in enumerate(parts):
        if not _atoi_ok(part):
            raise DecodeError(
                f"failed to convert {_PART_NAMES[i]} version part {quote(part)}: "
                f"strconv.Atoi: parsing {quote(part)}: invalid syntax"
            )
        nums[i] = int(part)
    return (nums[0], nums[1], nums[2])


def version_ge(a: str, b: str) -> bool:
    """``a >= b`` (Go ``GreaterThanOrEqualTo``). Raises DecodeError on a bad version."""
    return parse_version(a) >= parse_version(b)


def version_gt(a: str, b: str) -> bool:
    """``a > b`` (Go ``GreaterThan``). Raises DecodeError on a bad version."""
    return parse_version(a) > parse_version(b)


def check_supported(conf_version: str, supported: Sequence[str]) -> None:
    """The plugin-side check of the config version (Go ``Reconciler.CheckRaw``).

    Exact string membership: "1.0" is not "1.0.0", as in Go.

    Raises:
        IncompatibleVersion: msg "incompatible CNI versions", details
            ``config is "X", plugin supports ["a" "b"]`` (what Go skel prints).
    """
    if conf_version in supported:
        return
    raise IncompatibleVersion(
        "incompatible CNI versions",
        f"config is {quote(conf_version)}, plugin supports {quote_list(supported)}",
    )


def version_reply(supported: Sequence[str]) -> dict[str, Any]:
    """The VERSION command's stdout object (Go ``PluginSupports(...).Encode``).

    ``cniVersion`` is the library's current version whatever the request said.
    Go prints it compact with a trailing newline: ``marshal(reply) + b"\\n"``.
    """
    if not supported:
        raise ValueError("programmer error: a plugin must support at least one version")
    return {"cniVersion": CURRENT, "supportedVersions": list(supported)}


def decode_version_reply(data: bytes | str) -> list[str]:
    """Runtime side: a plugin's VERSION stdout to its supported versions (Go ``PluginDecoder``).

    A 0.2.0-era plugin that omits ``supportedVersions`` but says ``cniVersion: "0.2.0"``
    supports 0.1.0 and 0.2.0.

    Raises:
        DecodeError: bad JSON, missing ``cniVersion`` or missing ``supportedVersions``.
    """
    info = loads(data, "decoding version info")
    if not isinstance(info, dict):
        raise DecodeError("decoding version info", "not a JSON object")
    cni_version = info.get("cniVersion")
    supported = info.get("supportedVersions")
    cni_version = "" if cni_version is None else cni_version
    supported = [] if supported is None else supported
    if not isinstance(cni_version, str):
        raise DecodeError("decoding version info", "cniVersion is not a string")
    if not isinstance(supported, list) or not all(isinstance(s, str) for s in supported):
        raise DecodeError("decoding version info", "supportedVersions is not a list of strings")
    if cni_version == "":
        raise DecodeError("decoding version info: missing field cniVersion")
    if not supported:
        if cni_version == "0.2.0":
            return ["0.1.0", "0.2.0"]
        raise DecodeError("decoding version info: missing field supportedVersions")
    return list(supported)


def legacy_supported_versions(err: KanalError) -> list[str] | None:
    """``["0.1.0"]`` if ``err`` is a pre-0.2.0 plugin's answer to VERSION, else None.

    Such plugins fail with "unknown CNI_COMMAND: VERSION"; libcni then treats them as
    0.1.0-only (``invoke.GetVersionInfo``).
    """
    if err.msg == "unknown CNI_COMMAND: VERSION" and not err.details:
        return ["0.1.0"]
    return None


def highest_version(versions: Iterable[str], limit: str = CURRENT) -> str:
    """The highest version in ``versions`` that is not above ``limit``.

    Raises:
        DecodeError: a version does not parse.
        IncompatibleVersion: none is at or below ``limit``.
    """
    vs = list(versions)
    top = parse_version(limit)
    best: tuple[tuple[int, int, int], str] | None = None
    for v in vs:
        parsed = parse_version(v)
        if parsed <= top and (best is None or parsed > best[0]):
            best = (parsed, v)
    if best is None:
        raise IncompatibleVersion(f"no CNI version at or below {limit} in {quote_list(vs)}")
    return best[1]
