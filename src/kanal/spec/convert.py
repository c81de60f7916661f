"""Result conversion between wire versions, and result encoding/decoding.

A registry of converters, as Go's ``pkg/types/internal/convert.go``: each converter
is registered for one source version and a list of target versions, and the table
below reproduces Go's registrations exactly (same lossy steps, same errors). Each
wire family has its own object (:class:`~kanal.spec.result_020.Result020`,
:class:`~kanal.spec.result_040.Result040`, and the model
:class:`~kanal.spec.types.Result` for 1.x), so :func:`convert_result` converts
exactly as Go would, without detours through the model.

Lossy steps (cni.md §1.5):

- to 0.1.0/0.2.0: only the first IPv4 and first IPv6 address survive; routes go to
  the family of their ``dst`` and are dropped when that family has no address, and
  keep only ``dst``/``gw``; interfaces are dropped; no address at all is an error
  ("cannot convert: no valid IP addresses").
- 1.x to 0.3.x/0.4.0: ``ips[].version`` is derived from the address; the 1.1.0
  interface fields (mtu, socketPath, pciID) are dropped. Route fields are kept: Go
  uses one ``types.Route`` struct for every version.
- 1.1.0 to 1.0.0: everything is copied, 1.1.0-only fields included (as Go).
"""

from __future__ import annotations

from collections.abc import Mapping

from kanal.errors import DecodeError, IncompatibleVersion, Internal
from kanal.spec import _wire, gojson, result_020, result_040, result_100
from kanal.spec._go import loads, marshal, quote
from kanal.spec.result_020 import IPConfig020, Result020
from kanal.spec.result_040 import Interface040, IPConfig040, Result040
from kanal.spec.types import Interface, IPConfig, Result, Route
from kanal.spec.versions import CURRENT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TypeVar

__all__ = [
    "WireResult",
    "convert",
    "convert_result",
    "converter",
    "decode_wire",
    "dumps",
    "encode_wire",
    "parse_result",
    "render_result",
]

WireResult = Result020 | Result040 | Result
if TYPE_CHECKING:
    ConvertFn = Callable[[Any, str], WireResult]
    F = TypeVar("F", bound=ConvertFn)

_CONVERTERS: dict[tuple[str, str], ConvertFn] = {}

_FROM_WIRE: dict[str, Callable[..., WireResult]] = {}
for _v in result_020.VERSIONS:
    _FROM_WIRE[_v] = result_020.from_wire
for _v in result_040.VERSIONS:
    _FROM_WIRE[_v] = result_040.from_wire
for _v in result_100.VERSIONS:
    _FROM_WIRE[_v] = result_100.from_wire


def converter(from_: str, to: Sequence[str]) -> Callable[[F], F]:
    """Register ``fn(result, to_version)`` for ``from_`` -> each of ``to``.

    Raises:
        RuntimeError: a converter for one of the pairs is already registered.
    """

    def register(fn: F) -> F:
        for v in to:
            if (from_, v) in _CONVERTERS:
                raise RuntimeError(f"converter already registered for {from_} to {v}")
            _CONVERTERS[(from_, v)] = fn
        return fn

    return register


def convert(result: WireResult, to_version: str) -> WireResult:
    """Convert a wire-family object to ``to_version`` (Go ``convert.Convert``).

    ``""`` means 0.1.0. The same version returns ``result`` itself.

    Raises:
        IncompatibleVersion: no converter for the pair (an unknown version).
        Internal: the conversion is impossible ("cannot convert: no valid IP addresses").
    """
    if to_version == "":
        to_version = "0.1.0"
    from_version = result.cni_version
    if from_version == to_version:
        return result
    fn = _CONVERTERS.get((from_version, to_version))
    if fn is None:
        raise IncompatibleVersion(
            f"no converter for CNI result version {from_version} to {to_version}"
        )
    return fn(result, to_version)


# --- 0.1.0 <-> 0.2.0 (Go types020) ------------------------------------------------


def _copy_ipconfig020(c: IPConfig020 | None) -> IPConfig020 | None:
    if c is None:
        return None
    return IPConfig020(c.ip, c.gateway, [_wire.copy_route(r) for r in c.routes])


@converter(from_="0.1.0", to=["0.2.0"])
@converter(from_="0.2.0", to=["0.1.0"])
def _020_copy(r: Result020, to: str) -> Result020:
    return Result020(to, _copy_ipconfig020(r.ip4), _copy_ipconfig020(r.ip6), _wire.copy_dns(r.dns))


# --- 0.3.x/0.4.0 (Go types040) ----------------------------------------------------


@converter(from_="0.1.0", to=result_040.VERSIONS)
@converter(from_="0.2.0", to=result_040.VERSIONS)
def _020_to_040(r: Result020, to: str) -> Result040:
    out = Result040(to, dns=_wire.copy_dns(r.dns))
    for family, c in (("4", r.ip4), ("6", r.ip6)):
        if c is not None:
            out.ips.append(IPConfig040(family, c.ip, c.gateway))
            out.routes.extend(_wire.copy_route(rt) for rt in c.routes)
    return out


@converter(from_="0.3.0", to=result_040.VERSIONS)
@converter(from_="0.3.1", to=result_040.VERSIONS)
@converter(from_="0.4.0", to=["0.3.0", "0.3.1"])
def _040_internal(r: Result040, to: str) -> Result040:
    return Result040(
        to,
        [Interface040(i.name, i.mac, i.sandbox) for i in r.interfaces],
        [IPConfig040(c.version, c.address, c.gateway, c.interface) for c in r.ips],
        [_wire.copy_route(rt) for rt in r.routes],
        _wire.copy_dns(r.dns),
    )


@converter(from_="0.3.0", to=result_020.VERSIONS)
@converter(from_="0.3.1", to=result_020.VERSIONS)
@converter(from_="0.4.0", to=result_020.VERSIONS)
def _040_to_020(r: Result040, to: str) -> Result020:
    out = Result020(to, dns=_wire.copy_dns(r.dns))
    # 0.2.0 holds one address per family: keep the first of each (by the sent version).
    for c in r.ips:
        if c.version == "4" and out.ip4 is None:
            out.ip4 = IPConfig020(c.address, c.gateway)
        elif c.version == "6" and out.ip6 is None:
            out.ip6 = IPConfig020(c.address, c.gateway)
        if out.ip4 is not None and out.ip6 is not None:
            break
    for rt in r.routes:
        target = out.ip4 if rt.dst.version == 4 else out.ip6
        if target is not None:  # a route whose family has no address is dropped
            target.routes.append(Route(rt.dst, rt.gw))
    if out.ip4 is None and out.ip6 is None:
        raise Internal("cannot convert: no valid IP addresses")
    return out


# --- 1.0.0/1.1.0 (Go types100) ----------------------------------------------------


@converter(from_="0.1.0", to=result_100.VERSIONS)
@converter(from_="0.2.0", to=result_100.VERSIONS)
def _020_to_100(r: Result020, to: str) -> Result:
    r040 = convert(r, "0.4.0")
    assert isinstance(r040, Result040)
    return _040_to_100(r040, to)


@converter(from_="0.3.0", to=result_100.VERSIONS)
@converter(from_="0.3.1", to=result_100.VERSIONS)
@converter(from_="0.4.0", to=result_100.VERSIONS)
def _040_to_100(r: Result040, to: str) -> Result:
    return Result(
        to,
        [Interface(i.name, i.mac, i.sandbox) for i in r.interfaces],
        [IPConfig(c.address, c.gateway, c.interface) for c in r.ips],
        [_wire.copy_route(rt) for rt in r.routes],
        _wire.copy_dns(r.dns),
    )


def _copy_interface(i: Interface) -> Interface:
    return Interface(i.name, i.mac, i.sandbox, i.mtu, i.socket_path, i.pci_id)


@converter(from_="1.0.0", to=["1.1.0"])
@converter(from_="1.1.0", to=["1.0.0"])
def _100_copy(r: Result, to: str) -> Result:
    return Result(
        to,
        [_copy_interface(i) for i in r.interfaces],
        [IPConfig(c.address, c.gateway, c.interface) for c in r.ips],
        [_wire.copy_route(rt) for rt in r.routes],
        _wire.copy_dns(r.dns),
    )


@converter(from_="1.0.0", to=result_040.VERSIONS)
@converter(from_="1.1.0", to=result_040.VERSIONS)
def _100_to_040(r: Result, to: str) -> Result040:
    return Result040(
        to,
        [Interface040(i.name, i.mac, i.sandbox) for i in r.interfaces],
        [IPConfig040(c.version, c.address, c.gateway, c.interface) for c in r.ips],
        [_wire.copy_route(rt) for rt in r.routes],
        _wire.copy_dns(r.dns),
    )


@converter(from_="1.0.0", to=result_020.VERSIONS)
@converter(from_="1.1.0", to=result_020.VERSIONS)
def _100_to_020(r: Result, to: str) -> WireResult:
    return convert(_100_to_040(r, "0.4.0"), to)


# --- encoding / decoding -----------------------------------------------------------


def _as_object(
    data: Mapping[str, Any] | bytes | str, version: str | None
) -> tuple[Mapping[str, Any], bool]:
    """The result object and whether it is decoded ``via_map`` (see gojson).

    Bytes are what a plugin printed (libcni decodes them into the result struct). A
    mapping is a prevResult, which Go holds as ``map[string]interface{}``: Go's
    ``ParsePrevResult`` adds a ``CNIVersion`` key with the config's version when
    there is none (or it is ""), and marshals the map again (sorted keys).
    """
    if isinstance(data, bytes | bytearray | str):
        obj = loads(data, "failed to decode CNI result")
        if not isinstance(obj, Mapping):
            raise DecodeError("failed to decode CNI result", "not a JSON object")
        return obj, False
    if not isinstance(data, Mapping):
        raise DecodeError("failed to decode CNI result", "not a JSON object")
    if version and ("CNIVersion" not in data or data["CNIVersion"] == ""):
        data = {**dict(gojson.members(data)), "CNIVersion": version}
    return data, True


def _wire_version(d: Mapping[str, Any], version: str | None, via_map: bool) -> str:
    from kanal.spec.gotypes import VERSION_ONLY

    raw: str = gojson.decode(
        VERSION_ONLY, d, "failed to decode CNI result", via_map=via_map, error=DecodeError
    )["cniVersion"]
    if raw:
        return raw
    # No cniVersion: libcni assumes the config's version (cni#895); without one Go's
    # create.DecodeVersion says 0.1.0.
    return version or "0.1.0"


def _family(version: str) -> tuple[str, ...]:
    for versions in (result_020.VERSIONS, result_040.VERSIONS, result_100.VERSIONS):
        if version in versions:
            return versions
    return ()


def decode_wire(data: Mapping[str, Any] | bytes | str, version: str | None = None) -> WireResult:
    """Decode a result into its own wire family's object (no conversion).

    ``version`` is used when the data has no (or an empty) ``cniVersion``.

    Raises:
        DecodeError: bad JSON, not an object, or a bad field.
        IncompatibleVersion: the version is not one of ``ALL_VERSIONS``.
    """
    d, via_map = _as_object(data, version)
    return _decode(d, _wire_version(d, version, via_map), via_map)


def _decode(d: Mapping[str, Any], wire_version: str, via_map: bool) -> WireResult:
    from_wire = _FROM_WIRE.get(wire_version)
    if from_wire is None:
        raise IncompatibleVersion(f"unsupported CNI result version {quote(wire_version)}")
    return from_wire(d, wire_version, via_map=via_map)


def encode_wire(result: WireResult) -> dict[str, Any]:
    """The JSON-ready dict of a wire-family object at its own ``cni_version``."""
    if isinstance(result, Result020):
        return result_020.to_wire(result)
    if isinstance(result, Result040):
        return result_040.to_wire(result)
    return result_100.to_wire(result)


def parse_result(
    data: Mapping[str, Any] | bytes | str,
    version: str | None = None,
    *,
    same_family: bool = False,
) -> Result:
    """Decode a result of any wire version into the model.

    ``version`` is the config's ``cniVersion``; it stands in for a missing or empty
    ``cniVersion`` in the data (libcni's fix-up of plugin output, and Go
    ``ParsePrevResult``). Without either, the result is 0.1.0 (Go
    ``create.DecodeVersion``). With ``same_family=True`` the data's version must be
    in the same result family as ``version``, as Go's ``ParsePrevResult`` demands
    (a 0.4.0 prevResult under a 1.0.0 config is then an error).

    The returned ``Result.cni_version`` is the wire version that was decoded.

    Raises:
        DecodeError: bad JSON, not an object, or a field of the wrong type.
        IncompatibleVersion: unknown version, or (``same_family``) a family mismatch.
    """
    d, via_map = _as_object(data, version)
    wire_version = _wire_version(d, version, via_map)
    if same_family and version:
        family = _family(version)
        if wire_version not in family:
            raise IncompatibleVersion(
                f"result type supports [{' '.join(family)}] but unmarshalled "
                f"CNIVersion is {quote(wire_version)}"
            )
    obj = _decode(d, wire_version, via_map)
    model = convert(obj, CURRENT)
    assert isinstance(model, Result)
    model.cni_version = wire_version
    return model


def render_result(result: Result, version: str) -> dict[str, Any]:
    """The JSON-ready wire dict of ``result`` at ``version`` (Go ``PrintResult``).

    ``result`` is read as a current-version result whatever its ``cni_version``;
    ``""`` means 0.1.0.

    Raises:
        IncompatibleVersion: ``version`` is not one of ``ALL_VERSIONS``.
        Internal: "cannot convert: no valid IP addresses" (0.1.0/0.2.0 without an IP).
    """
    src = Result(CURRENT, result.interfaces, result.ips, result.routes, result.dns)
    # The identity conversion returns src itself; to_wire never mutates it.
    return encode_wire(convert(src, version))


def convert_result(data: Mapping[str, Any] | bytes | str, to_version: str) -> dict[str, Any]:
    """Convert a wire result (any version) to the wire dict at ``to_version``, as Go does.

    Raises:
        DecodeError, IncompatibleVersion, Internal: as :func:`parse_result` and
        :func:`render_result`.
    """
    return encode_wire(convert(decode_wire(data), to_version))


def dumps(obj: Any, *, compact: bool = False) -> bytes:
    """JSON bytes as Go prints them.

    Default: ``json.MarshalIndent(obj, "", "    ")``, what ``PrintResult`` and the
    error printer write (no trailing newline). ``compact=True``: ``json.Marshal``
    (the VERSION reply adds ``b"\\n"``). Keys keep the dict's order.
    """
    return marshal(obj, indent=None if compact else 4)
