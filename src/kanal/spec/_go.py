"""Small emulations of Go library behaviour that the CNI wire formats depend on.

- :func:`quote` is ``strconv.Quote`` (what ``%q`` prints in Go error texts).
- :func:`loads` is ``encoding/json``'s syntax (see :mod:`kanal.spec.gojson`, which also
  holds Go's rules for decoding into structs).
- :func:`marshal` is ``json.Marshal``/``json.MarshalIndent``: Go escapes ``<``, ``>``,
  ``&``, U+2028 and U+2029 and writes other non-ASCII text as raw UTF-8.
"""

from __future__ import annotations

from kanal import _json
from kanal.spec.gojson import MAX_JSON_BYTES, loads

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = ["MAX_JSON_BYTES", "loads", "marshal", "quote", "quote_list", "type_name"]

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
