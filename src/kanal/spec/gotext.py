"""Go's JSON text and strings, as the CNI wire formats depend on them.

- :func:`loads` is ``encoding/json``'s syntax: objects as :class:`GoObject` (repeated
  keys kept), fractions and exponents as :class:`GoNumber` (the literal kept), invalid
  UTF-8 in strings replaced. Go's rules for decoding into structs are
  :mod:`kanal.spec.gojson`'s.
- :func:`quote` is ``strconv.Quote`` (what ``%q`` prints in Go error texts);
  :func:`type_name`, :func:`kind` and :func:`literal` word values in those texts.
- :func:`marshal` is ``json.Marshal``/``json.MarshalIndent``: Go escapes ``<``, ``>``,
  ``&``, U+2028 and U+2029 and writes other non-ASCII text as raw UTF-8.

Lean (every plugin exec imports it): the C scanner is driven through
:mod:`kanal._json`, no ``json``, ``re`` or ``typing``.
"""

from __future__ import annotations

from collections.abc import Mapping

from kanal import _json
from kanal.errors import DecodeError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    _Dict = dict[str, Any]
else:
    _Dict = dict

__all__ = [
    "MAX_JSON_BYTES",
    "GoNumber",
    "GoObject",
    "kind",
    "literal",
    "loads",
    "marshal",
    "members",
    "quote",
    "quote_list",
    "type_name",
    "valid_utf16",
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


def kind(v: Any) -> str:
    """The JSON kind of a decoded value, as Go's type errors name it."""
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


def literal(v: int | float) -> str:
    """A decoded number as it was written (Go's error texts quote the literal)."""
    if isinstance(v, GoNumber):
        return v.text
    return repr(v) if isinstance(v, float) else str(v)


def valid_utf16(s: str) -> str:
    """``s`` with each lone surrogate (from a ``\\ud800`` escape) replaced by U+FFFD, as
    Go decodes; by hand, not with ``re``."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in s)
    return s


_SHORT_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    '"': '\\"',
    "\\": "\\\\",
}


def quote(s: str | bytes) -> str:
    """``strconv.Quote(s)``: a double-quoted Go string literal."""
    if isinstance(s, bytes):
        # Undecodable bytes come back as lone surrogates U+DC80..U+DCFF; Go prints them as \xHH.
        s = s.decode("utf-8", "surrogateescape")
    out = ['"']
    for ch in s:
        esc = _SHORT_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
            continue
        cp = ord(ch)
        if 0xDC80 <= cp <= 0xDCFF:
            out.append(f"\\x{cp - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif cp < 0x80:
            out.append(f"\\x{cp:02x}")
        elif cp < 0x10000:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


def quote_list(items: Iterable[str]) -> str:
    """``fmt.Sprintf("%q", []string{...})``: ``["a" "b"]``."""
    return "[" + " ".join(quote(i) for i in items) + "]"


_GO_ESCAPES = str.maketrans(
    {
        "<": "\\u003c",
        ">": "\\u003e",
        "&": "\\u0026",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
    }
)


def marshal(obj: Any, *, indent: int | None = None, sort_keys: bool = False) -> bytes:
    """Serialise like Go: compact (``json.Marshal``) or indented (``json.MarshalIndent``).

    Key order is the dict's own order unless ``sort_keys`` (Go sorts map keys).
    """
    separators = (",", ": ") if indent is not None else (",", ":")
    text = _json.dumps(
        obj,
        ensure_ascii=False,
        indent=indent,
        separators=separators,
        sort_keys=sort_keys,
        allow_nan=False,
    )
    # Only string contents can hold these characters, so a textual pass is safe.
    text = text.translate(_GO_ESCAPES)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: Go writes U+FFFD for each
        return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text).encode()


def type_name(value: Any) -> str:
    """Go's ``%T`` of a value decoded into ``interface{}`` (for error texts)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return type(value).__name__
