"""``json.loads``/``json.dumps`` for plain data, without importing :mod:`json`.

Importing json costs ~5 ms (``re`` and the patterns it compiles), a third of a
standalone plugin exec's own budget, for one config decoded and one result
encoded. These drive the same C accelerator json uses (``_json``) and give the
same results; anything out of the ordinary — every error included, so messages
are json's own — is handed to :mod:`json` itself.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["decode", "dumps", "loads", "raw_decode"]

_WS = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Context:
    """The attributes the C scanner reads from a ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    parse_int = int

    def __init__(
        self,
        parse_constant: Callable[[str], Any],
        object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
        parse_float: Callable[[str], Any] = float,
    ) -> None:
        self.parse_constant = parse_constant
        self.object_pairs_hook = object_pairs_hook
        self.parse_float = parse_float


_SCANNERS: dict[Any, Any] = {}


def _scanner(
    parse_constant: Callable[[str], Any] | None,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
    parse_float: Callable[[str], Any] | None = None,
) -> Any:
    key = (parse_constant, object_pairs_hook, parse_float)
    s = _SCANNERS.get(key)
    if s is None:
        s = _SCANNERS[key] = _json.make_scanner(
            _Context(  # type: ignore[arg-type]
                parse_constant or _CONSTANTS.__getitem__, object_pairs_hook, parse_float or float
            )
        )
    return s


def loads(s: str | bytes | bytearray, *, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """``json.loads(s, parse_constant=...)``: same value, same exceptions."""
    if isinstance(s, bytes | bytearray):
        # json detects UTF-16/32 by NULs and BOMs; those (and bad UTF-8) go to json.
        if b"\0" in s[:4] or s[:3] == b"\xef\xbb\xbf" or s[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return _slow_loads(s, parse_constant)
        try:
            text = s.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return _slow_loads(s, parse_constant)
    elif isinstance(s, str):
        text = s
    else:
        return _slow_loads(s, parse_constant)
    n = len(text)
    i = 0
    while i < n and text[i] in _WS:
        i += 1
    try:
        obj, end = _scanner(parse_constant)(text, i)
    except Exception:  # StopIteration, JSONDecodeError, RecursionError, a constant refused
        return _slow_loads(s, parse_constant)
    while end < n and text[end] in _WS:
        end += 1
    if end != n:
        return _slow_loads(s, parse_constant)
    return obj


def decode(
    s: str,
    *,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
    parse_float: Callable[[str], Any] | None = None,
    parse_constant: Callable[[str], Any] | None = None,
) -> Any:
    """``json.JSONDecoder(object_pairs_hook=..., parse_float=..., parse_constant=...)
    .decode(s)``: same value, same exceptions (every error is json's own: the text is
    decoded again by json; the hooks must not mind being called twice)."""
    n = len(s)
    i = 0
    while i < n and s[i] in _WS:
        i += 1
    try:
        obj, end = _scanner(parse_constant, object_pairs_hook, parse_float)(s, i)
    except Exception:  # StopIteration, JSONDecodeError, RecursionError, a hook's own error
        return _slow_decode(s, object_pairs_hook, parse_float, parse_constant)
    while end < n and s[end] in _WS:
        end += 1
    if end != n:
        return _slow_decode(s, object_pairs_hook, parse_float, parse_constant)
    return obj


def _slow_decode(
    s: str,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None,
    parse_float: Callable[[str], Any] | None,
    parse_constant: Callable[[str], Any] | None,
) -> Any:
    # lazy: json only for what the lean codec leaves to it (json costs an exec ~5 ms)
    import json

    return json.JSONDecoder(
        object_pairs_hook=object_pairs_hook, parse_float=parse_float, parse_constant=parse_constant
    ).decode(s)


def raw_decode(
    s: str, *, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None
) -> tuple[Any, int]:
    """``json.JSONDecoder(object_pairs_hook=...).raw_decode(s)``: the value at the start
    of ``s`` and where it ends. ValueError when there is none; the hook's own
    exceptions pass through."""
    scan = _json.make_scanner(
        _Context(_CONSTANTS.__getitem__, object_pairs_hook)  # type: ignore[arg-type]
    )
    try:
        obj, end = scan(s, 0)
    except StopIteration as e:
        raise ValueError(f"Expecting value: char {e.value}") from None
    return obj, end


def _slow_loads(s: Any, parse_constant: Callable[[str], Any] | None) -> Any:
    # lazy: json only for what the lean codec leaves to it (json costs an exec ~5 ms)
    import json

    return json.loads(s, parse_constant=parse_constant)


class _Unusual(Exception):
    """Something the lean encoder leaves to json."""


# long: one encoder loop kept inline (the exec path calls it for every result)
def dumps(
    obj: Any,
    *,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    ensure_ascii: bool = True,
    sort_keys: bool = False,
    allow_nan: bool = True,
) -> str:
    """``json.dumps`` with these arguments: same text for dicts (str keys), lists,
    tuples, str, int, float (and their subclasses), bool and None; json's own output
    (or error) otherwise.

    Why one function over 80 lines: ``emit`` is a closure over the settings, called
    for every value of every plugin's output; as methods it would read each setting
    as an attribute on every call.
    """
    if separators is None:
        separators = (",", ": ") if indent is not None else (", ", ": ")
    item_sep, key_sep = separators
    enc: Callable[[str], str] = (
        _json.encode_basestring_ascii if ensure_ascii else _json.encode_basestring  # type: ignore[attr-defined]
    )
    out: list[str] = []
    pad = None if indent is None else " " * indent

    def emit(o: Any, level: int) -> None:
        # isinstance, as json's encoders: subclasses (a decoded config's GoObject and
        # GoNumber) encode as their base type.
        if isinstance(o, str):
            out.append(enc(o))
        elif o is None:
            out.append("null")
        elif o is True:
            out.append("true")
        elif o is False:
            out.append("false")
        elif isinstance(o, int):
            out.append(int.__repr__(o))
        elif isinstance(o, float):
            if o != o or o in (float("inf"), float("-inf")):
                raise _Unusual
            out.append(float.__repr__(o))
        elif isinstance(o, list | tuple):
            if not o:
                out.append("[]")
                return
            if pad is None:
                out.append("[")
                for k, v in enumerate(o):
                    if k:
                        out.append(item_sep)
                    emit(v, level)
                out.append("]")
            else:
                inner = "\n" + pad * (level + 1)
                out.append("[")
                for k, v in enumerate(o):
                    out.append(item_sep + inner if k else inner)
                    emit(v, level + 1)
                out.append("\n" + pad * level + "]")
        elif isinstance(o, dict):
            if not o:
                out.append("{}")
                return
            items = sorted(o.items()) if sort_keys else o.items()
            inner = "" if pad is None else "\n" + pad * (level + 1)
            out.append("{")
            first = True
            for key, v in items:
                if not isinstance(key, str):
                    raise _Unusual
                out.append(inner if first else item_sep + inner)
                first = False
                out.append(enc(key))
                out.append(key_sep)
                emit(v, level + 1)
            out.append("}" if pad is None else "\n" + pad * level + "}")
        else:
            raise _Unusual

    try:
        emit(obj, 0)
    except (_Unusual, RecursionError, TypeError):
        # lazy: json only for what the lean codec leaves to it (json costs an exec ~5 ms)
        import json

        return json.dumps(
            obj,
            indent=indent,
            separators=separators,
            ensure_ascii=ensure_ascii,
            sort_keys=sort_keys,
            allow_nan=allow_nan,
        )
    return "".join(out)
