"""Go's ``encoding/json`` decoding rules: the one layer every CNI config object goes through.

The Go plugins and libcni read their JSON into Go structs, and runtimes rely on how
that reads: containerd's go-cni sends ``runtimeConfig.portMappings`` entries as
``{"HostPort": …, "ContainerPort": …}`` because Go matches ``hostPort``
case-insensitively. So kanal decodes every config object (the netconf, each
plugin's keys, ``runtimeConfig`` and its capabilities, ``ipam``, ``args``,
``prevResult``) through a :class:`Spec` that describes the Go struct, with Go's
rules:

- **keys**: an object member goes to the field whose JSON name equals the key; if
  none does, to the first field (declaration order) whose name equals it ignoring
  case (ASCII case, plus U+212A KELVIN SIGN for ``k`` and U+017F LONG S for ``s``, as
  Go folds). Unknown keys are ignored.
- **order and duplicates**: members are applied in document order, so for one field
  the last matching member wins; an object decoded into a struct or map that already
  holds a value merges into it; an array decoded into a slice reuses the existing
  elements (so a repeated key can merge into an earlier entry, as in Go).
- **null**: leaves a bool, number, string or struct field as it was; sets a pointer,
  slice, map or ``interface{}`` field to nil (None here).
- **numbers**: into an integer field the literal must be an integer (no fraction, no
  exponent) within the field's range; into ``float64`` any number. A number where a
  string is wanted (or the reverse) is a type error.
- **errors**: a type mismatch is remembered and decoding goes on (Go's
  ``UnmarshalTypeError``; the first one is reported, with Go's text); an error from
  a type with its own unmarshaller (an IP address, a CIDR) stops decoding at once.
- **strings**: invalid UTF-8 and lone surrogates become U+FFFD.

``prevResult`` is a ``map[string]interface{}`` in Go, marshalled again before it is
decoded as a result: ``via_map=True`` reproduces that round trip (duplicates
collapsed, keys applied in sorted order, integral floats accepted as integers).

Decoded structs are plain dicts keyed by the fields' JSON names, every field present
(its zero value when absent: False, 0, "", None for pointers, slices and maps), so
consumers index them directly. Stdlib only, and lean: every plugin exec imports this,
so it imports neither ``json`` nor ``re`` (the C scanner is driven through
:mod:`kanal._json`; json comes in only to word an error) nor ``typing``.
"""

from __future__ import annotations

from collections.abc import Mapping

from kanal import _json
from kanal.errors import DecodeError, InvalidConfig, KanalError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

    _Dict = dict[str, Any]
else:
    _Dict = dict

__all__ = [
    "ANY",
    "BOOL",
    "FLOAT64",
    "INT",
    "INT32",
    "MAX_JSON_BYTES",
    "STRING",
    "UINT16",
    "UINT32",
    "UINT64",
    "Any_",
    "Bool",
    "Float",
    "GoNumber",
    "GoObject",
    "Int",
    "Map",
    "Ptr",
    "Slice",
    "Spec",
    "Str",
    "Struct",
    "Text",
    "Unmarshaler",
    "decode",
    "decode_lenient",
    "fold",
    "loads",
    "members",
]

# Why a bound: configs and results are small; a plugin or runtime must not be made to
# buffer and parse arbitrary input.
MAX_JSON_BYTES = 1 << 20


class GoObject(_Dict):
    """A decoded JSON object: a dict (each exact key's last value, like Go's
    ``map[string]interface{}``) that also keeps every member in document order."""

    __slots__ = ("members",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.members = pairs


class GoNumber(float):
    """A JSON number written with a fraction or an exponent; ``text`` is the literal."""

    __slots__ = ("text",)

    text: str


def _number(text: str) -> GoNumber:
    n = GoNumber(text)
    n.text = text
    return n


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON value {name}")


def loads(data: bytes | str, what: str = "JSON", limit: int = MAX_JSON_BYTES) -> Any:
    """Decode JSON as Go accepts it; objects are :class:`GoObject`.

    Input longer than ``limit`` bytes (characters for str) is refused unread.

    Raises:
        DecodeError(``what``, reason): too long, or not valid JSON.
    """
    if len(data) > limit:
        raise DecodeError(what, f"input is {len(data)} bytes, more than the {limit} allowed")
    try:
        if isinstance(data, bytes | bytearray):
            # Go's decoder replaces invalid UTF-8 inside strings; outside them such
            # bytes are a syntax error either way.
            data = bytes(data).decode("utf-8", "replace")
        return _json.decode(
            data, object_pairs_hook=GoObject, parse_float=_number, parse_constant=_reject_constant
        )
    except (ValueError, RecursionError) as e:
        raise DecodeError(what, str(e) or type(e).__name__) from e


def members(obj: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """An object's members in document order, duplicates included when known."""
    if isinstance(obj, GoObject):
        return obj.members
    return list(obj.items())


_FOLD = {"\u212a": "k", "\u017f": "s"}


def fold(key: str) -> str:
    """Go's case folding of a key, as far as it can match an ASCII field name."""
    if key.isascii():
        return key.lower()
    return "".join(_FOLD.get(c, c.lower() if c.isascii() else c) for c in key)


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "string"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, list):
        return "array"
    if isinstance(v, Mapping):
        return "object"
    return type(v).__name__


def _literal(v: int | float) -> str:
    if isinstance(v, GoNumber):
        return v.text
    return repr(v) if isinstance(v, float) else str(v)


def _valid_utf16(s: str) -> str:
    """``s`` with each lone surrogate (from a ``\\ud800`` escape) replaced by U+FFFD, as
    Go decodes; by hand, not with ``re``."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in s)
    return s


class _Decoder:
    """State of one decode: the error context (Go's ``errorContext``), the errors."""

    __slots__ = ("aborted", "error", "fields", "structs", "type_error_of", "via_map")

    def __init__(self, via_map: bool) -> None:
        self.via_map = via_map
        self.structs: list[str] = []
        self.fields: list[str] = []
        self.error: str | None = None
        # (value, Go type) when ``error`` is an UnmarshalTypeError.
        self.type_error_of: tuple[str, str] | None = None
        self.aborted = False

    def _type_text(self, value: str, go: str) -> str:
        if self.fields:
            where = f"Go struct field {self.structs[-1]}.{'.'.join(self.fields)}"
        else:
            where = "Go value"
        return f"json: cannot unmarshal {value} into {where} of type {go}"

    def type_error(self, value: str, spec: Spec) -> None:
        """Go's ``saveError(&UnmarshalTypeError{...})``: the first one is kept."""
        if self.error is None:
            self.error = self._type_text(value, spec.go)
            self.type_error_of = (value, spec.go)

    def abort(self, msg: str) -> None:
        """An unmarshaller's own error: Go returns it at once, over any saved one."""
        self.error = msg
        self.type_error_of = None
        self.aborted = True

    def abort_type(self, value: str, go: str) -> None:
        """A type error returned by an unmarshaller: Go puts the outer field on it."""
        self.abort(self._type_text(value, go))
        self.type_error_of = (value, go)

    def members_of(self, obj: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
        if self.via_map:
            # map[string]interface{} -> json.Marshal: duplicates gone, keys sorted.
            return sorted(dict(members(obj)).items())
        return members(obj)


class Spec:
    """How one Go type decodes from JSON. ``go`` is its name in error texts."""

    go = "?"

    def zero(self) -> Any:
        return None

    def value(self, d: _Decoder, v: Any, cur: Any) -> Any:
        """The field's new value after decoding JSON value ``v`` into ``cur``."""
        if v is None:
            return self.null(d, cur)
        return self.decode(d, v, cur)

    def null(self, d: _Decoder, cur: Any) -> Any:
        return cur  # a value type: null is a no-op

    def decode(self, d: _Decoder, v: Any, cur: Any) -> Any:
        raise NotImplementedError


class Bool(Spec):
    go = "bool"

    def zero(self) -> bool:
        return False

    def decode(self, d: _Decoder, v: Any, cur: Any) -> Any:
        if isinstance(v, bool):
            return v
        d.type_error(_kind(v), self)
        return cur


class Str(Spec):
    go = "string"

    def zero(self) -> str:
        return ""

    def decode(self, d: _Decoder, v: Any, cur: Any) -> Any:
        if isinstance(v, str):
            return _valid_utf16(v)
        d.type_error(_kind(v), self)
        return cur


class Int(Spec):
    """A Go integer type: the JSON literal must be an integer in ``[lo, hi]``."""

    def __init__(self, go: str, lo: int, hi: int) -> None:
        self.go, self.lo, self.hi = go, lo, hi

    def zero(self) -> int:
        return 0

    def decode(self, d: _Decoder, v: Any, cur: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float):
            d.type_error(_kind(v), self)
            return cur
        n: int | None = None
        if isinstance(v, int):
            # Through interface{} every number is a float64 first.
            n = int(float(v)) if d.via_map and abs(v) > 1 << 53 else v
        elif d.via_map and v.is_integer() and abs(v) < 1e21:
            n = int(v)  # float64 1.0 marshals back as 1
        if n is None or not self.lo <= n <= self.hi:
            d.type_error(f"number {_literal(v)}", self)
            return cur
        return n


class Float(Spec):
    go = "float64"

    def zero(self) -> float:
        return 0.0

    def decode(self, d: _Decoder, v: Any, cur: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float):
            d.type_error(_kind(v), self)
            return cur
        return float(v)


class Any_(Spec):
    """``interface{}``: the JSON value as decoded (objects as dicts)."""

    go = "interface {}"

    def null(self, d: _Decoder, cur: Any) -> Any:
        return None

    def decode(self, d: _Decoder, v: Any, cur: Any) -> Any:
        return v


class Ptr(Spec):
    """``*T``: None when absent or null; otherwise T decoded (into the old value)."""

    def __init__(self, elem: Spec) -> None:
        self.elem = elem
        self.go = elem.go

    def null(self, d: _Decoder, cur: Any) -> Any:
        return None

    def decode(self, d: _Decoder, v: Any, cur: Any) -> Any:
        return self.elem.value(d, v, self.elem.zero() if cur is None else cur)


class Slice(Spec):
    """``[]T``: None when absent or null, else a list (existing elements reused, as Go)."""

    def __init__(self, elem: Spec) -> None:
        self.elem = elem
        self.go = "[]" + elem.go

    def null(self, d: _Decoder, cur: Any) -> Any:
        return None

    def decode(self, d: _Decoder, v: Any, cur: Any) -> Any:
        if not isinstance(v, list):
            d.type_error(_kind(v), self)
            return cur
        old = cur or []
        out = []
        for i, item in enumerate(v):
            if d.aborted:
                break
            base = old[i] if i < len(old) else self.elem.zero()
            out.append(self.elem.value(d, item, base))
        return out


class Map(Spec):
    """``map[string]T``: None when absent or null; an object merges into the old map,
    each member decoded into a fresh zero T.

    ``key``: the key type's ``UnmarshalText``, called with each key; a ValueError it
    raises stops the decode with its text.
    """

    def __init__(self, elem: Spec, key: Callable[[str], None] | None = None) -> None:
        self.elem = elem
        self.key = key
        self.go = "map[string]" + elem.go

    def null(self, d: _Decoder, cur: Any) -> Any:
        return None

    def decode(self, d: _Decoder, v: Any, cur: Any) -> Any:
        if not isinstance(v, Mapping):
            d.type_error(_kind(v), self)
            return cur
        out = dict(cur or {})
        for key, item in d.members_of(v):
            if d.aborted:
                break
            if self.key is not None:
                try:
                    self.key(key)
                except ValueError as e:
                    d.abort(str(e))
                    break
            out[key] = self.elem.value(d, item, self.elem.zero())
        return out


class Struct(Spec):
    """A Go struct: ``fields`` are (JSON name, spec) in declaration order.

    Embedded structs are listed flat, as Go promotes their fields; when a name is
    given twice the later one (the outer struct's own field) wins, as Go's depth rule.
    """

    def __init__(self, name: str, fields: Sequence[tuple[str, Spec]], pkg: str = "main") -> None:
        own: dict[str, Spec] = {}
        for fname, spec in fields:
            own.pop(fname, None)
            own[fname] = spec
        self.name = name
        self.go = f"{pkg}.{name}" if pkg else name
        self.fields: tuple[tuple[str, Spec], ...] = tuple(own.items())
        self._exact = own
        self._folded: dict[str, str] = {}
        for fname in own:
            self._folded.setdefault(fold(fname), fname)

    def field_for(self, key: str) -> str | None:
        """The field a member ``key`` goes to: exact name first, then folded."""
        if key in self._exact:
            return key
        return self._folded.get(fold(key))

    def zero(self) -> dict[str, Any]:
        return {name: spec.zero() for name, spec in self.fields}

    def decode(self, d: _Decoder, v: Any, cur: Any) -> Any:
        if not isinstance(v, Mapping):
            d.type_error(_kind(v), self)
            return cur
        out = dict(cur)
        for key, item in d.members_of(v):
            if d.aborted:
                break
            name = self.field_for(key)
            if name is None:
                continue
            d.structs.append(self.name)
            d.fields.append(name)
            out[name] = self._exact[name].value(d, item, out[name])
            d.structs.pop()
            d.fields.pop()
        return out

    def extend(self, name: str, fields: Sequence[tuple[str, Spec]]) -> Struct:
        """A struct embedding this one, with its own ``fields`` after the promoted ones."""
        return Struct(name, [*self.fields, *fields])


class Text(Spec):
    """A Go type with its own unmarshaller, read from a JSON string by ``parse``.

    ``json_unmarshaler``: the type implements ``UnmarshalJSON`` by decoding a string
    (``types.IPNet``): null reaches ``parse("")``, a non-string fails at once. Without
    it (``encoding.TextUnmarshaler``, e.g. ``net.IP``): null gives None, a non-string
    is an ordinary type error. ``parse`` raises ValueError/KanalError with Go's text.
    """

    def __init__(
        self, go: str, parse: Callable[[str], Any], *, json_unmarshaler: bool = False
    ) -> None:
        self.go = go
        self.parse = parse
        self.json_unmarshaler = json_unmarshaler

    def null(self, d: _Decoder, cur: Any) -> Any:
        if self.json_unmarshaler:
            return self._parse(d, "", cur)
        return None

    def decode(self, d: _Decoder, v: Any, cur: Any) -> Any:
        if isinstance(v, str):
            return self._parse(d, v, cur)
        if self.json_unmarshaler:
            d.abort_type(_kind(v), "string")
        else:
            d.type_error(_kind(v), self)
        return cur

    def _parse(self, d: _Decoder, s: str, cur: Any) -> Any:
        try:
            return self.parse(s)
        except KanalError as e:
            d.abort(str(e))
        except ValueError as e:
            d.abort(str(e))
        return cur


class Unmarshaler(Spec):
    """A type whose ``UnmarshalJSON`` decodes into a private struct with a json.Unmarshal
    of its own (``types.Route``, the results' ``IPConfig``): an error inside stops the
    whole decode; null gives the zero value."""

    def __init__(self, inner: Struct, go: str) -> None:
        self.inner = inner
        self.go = go

    def zero(self) -> Any:
        return self.inner.zero()

    def null(self, d: _Decoder, cur: Any) -> Any:
        return self.inner.zero()

    def decode(self, d: _Decoder, v: Any, cur: Any) -> Any:
        inner = _Decoder(d.via_map)
        out = self.inner.value(inner, v, self.inner.zero())
        if inner.error is None:
            return out
        if inner.type_error_of is not None:
            d.abort_type(*inner.type_error_of)
        else:
            d.abort(inner.error)
        return cur


BOOL = Bool()
STRING = Str()
INT = Int("int", -(1 << 63), (1 << 63) - 1)
INT32 = Int("int32", -(1 << 31), (1 << 31) - 1)
UINT16 = Int("uint16", 0, (1 << 16) - 1)
UINT32 = Int("uint32", 0, (1 << 32) - 1)
UINT64 = Int("uint64", 0, (1 << 64) - 1)
FLOAT64 = Float()
ANY = Any_()


def decode_lenient(spec: Spec, value: Any, *, via_map: bool = False) -> tuple[Any, str | None]:
    """Decode ``value`` (already parsed JSON) into ``spec``'s shape.

    Returns the value — as far as Go would have filled it, also on error — and the
    first error's text (None when there was none).
    """
    d = _Decoder(via_map)
    out = spec.value(d, value, spec.zero())
    return out, d.error


def decode(
    spec: Spec,
    value: Any,
    what: str = "failed to load netconf",
    *,
    via_map: bool = False,
    error: type[KanalError] = InvalidConfig,
) -> Any:
    """Decode ``value`` into ``spec``'s shape.

    Raises:
        ``error``\\(``what``, Go's error text): the first error Go would report
            (with ``what`` "": Go's text alone, as a plugin that returns it bare).
    """
    out, err = decode_lenient(spec, value, via_map=via_map)
    if err is not None:
        raise error(what, err) if what else error(err)
    return out
