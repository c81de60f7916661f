"""The functions a template can call: Go's built-ins and docker's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from kanal.cli.gotemplate.printf import go_sprint, go_sprintf
from kanal.cli.gotemplate.values import MISSING, _public, go_json, go_print, go_type, is_struct


class _FuncError(Exception):
    """An error a function returns: reported as ``error calling NAME: MSG``."""


class _Func(NamedTuple):
    fn: Callable[..., Any]
    params: tuple[str, ...]  # Go parameter types: any string int []string value bool
    variadic: str | None = None  # type of the ... parameter
    raw: bool = False  # gets reflect.Values: MISSING stays MISSING


def _truth(v: Any) -> bool:
    if v is None or v is MISSING:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    if isinstance(v, str | list | tuple | Mapping):
        return len(_public(v) if isinstance(v, Mapping) else v) > 0
    return True


def _kind(v: Any) -> str:
    if v is None or v is MISSING:
        return "invalid"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "other"


def _eq(a: Any, *rest: Any) -> bool:
    if not rest:
        raise _FuncError("missing argument for comparison")
    k1 = _kind(a)
    for b in rest:
        k2 = _kind(b)
        if k1 != k2:
            if k1 != "invalid" and k2 != "invalid":
                raise _FuncError("incompatible types for comparison")
            continue
        if k1 == "other":
            raise _FuncError(f"non-comparable type {go_print(b)}: {go_type(b)}")
        if k1 == "invalid" or a == b:
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    k1, k2 = _kind(a), _kind(b)
    if k1 in ("invalid", "other") or k2 in ("invalid", "other"):
        raise _FuncError("invalid type for comparison")
    if k1 != k2:
        raise _FuncError("incompatible types for comparison")
    if k1 == "bool":
        raise _FuncError("invalid type for comparison")
    return bool(a < b)


def _len(v: Any) -> int:
    if v is None:
        raise _FuncError("len of nil pointer")
    if isinstance(v, str):
        return len(v.encode("utf-8", "surrogatepass"))
    if isinstance(v, Mapping):
        return len(_public(v))
    if isinstance(v, list | tuple):
        return len(v)
    raise _FuncError(f"len of type {go_type(v)}")


def _index_arg(i: Any, cap: int) -> int:
    if i is None or i is MISSING:
        raise _FuncError("cannot index slice/array with nil")
    if isinstance(i, bool) or not isinstance(i, int):
        raise _FuncError(f"cannot index slice/array with type {go_type(i)}")
    if i < 0 or i > cap:
        raise _FuncError(f"index out of range: {i}")
    return int(i)


def _zero_of(d: Mapping[str, Any]) -> Any:
    """The zero value of a map's elements: "" for string maps (labels, options)."""
    vals = [v for _, v in _public(d)]
    return "" if all(isinstance(v, str) for v in vals) and not is_struct(d) else None


def _index(item: Any, *idx: Any) -> Any:
    if item is None or item is MISSING:
        raise _FuncError("index of untyped nil")
    for i in idx:
        if item is None:
            raise _FuncError("index of nil pointer")
        if isinstance(item, str):
            b = item.encode("utf-8", "surrogatepass")
            x = _index_arg(i, len(b))
            if x == len(b):
                raise _FuncError("reflect: string index out of range")
            item = b[x]
        elif isinstance(item, list | tuple):
            x = _index_arg(i, len(item))
            if x == len(item):
                raise _FuncError("reflect: slice index out of range")
            item = item[x]
        elif isinstance(item, Mapping):
            if i is None or i is MISSING:
                raise _FuncError("value is nil; should be of type string")
            if not isinstance(i, str):
                raise _FuncError(f"value has type {go_type(i)}; should be string")
            item = item[i] if i in item and not i.startswith("__") else _zero_of(item)
        else:
            raise _FuncError(f"can't index item of type {go_type(item)}")
    return item


def _slice(item: Any, *idx: Any) -> Any:
    if item is None or item is MISSING:
        raise _FuncError("slice of untyped nil")
    if len(idx) > 3:
        raise _FuncError(f"too many slice indexes: {len(idx)}")
    if isinstance(item, str):
        if len(idx) == 3:
            raise _FuncError("cannot 3-index slice a string")
        seq: Any = item.encode("utf-8", "surrogatepass")
    elif isinstance(item, list | tuple):
        seq = list(item)
    else:
        raise _FuncError(f"can't slice item of type {go_type(item)}")
    bounds = [0, len(seq)]
    for k, i in enumerate(idx):
        x = _index_arg(i, len(seq))
        if k < 2:
            bounds[k] = x
    if bounds[0] > bounds[1]:
        raise _FuncError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    if len(idx) == 3 and bounds[1] > idx[2]:
        raise _FuncError(f"invalid slice index: {bounds[1]} > {idx[2]}")
    out = seq[bounds[0] : bounds[1]]
    return out.decode("utf-8", "replace") if isinstance(out, bytes) else out


def _title(s: str) -> str:
    """strings.Title: upper-case the first letter of each word."""
    out, prev = [], " "
    for c in s:
        sep = not (c.isalnum() or c == "_") if c.isascii() else c.isspace()
        psep = not (prev.isalnum() or prev == "_") if prev.isascii() else prev.isspace()
        out.append(c.upper() if psep and not sep else c)
        prev = c
    return "".join(out)


def _case(s: str, conv: Callable[[str], str]) -> str:
    """strings.ToUpper/ToLower: rune by rune (``ß`` has no one-rune upper case)."""
    if s.isascii():
        return conv(s)
    out = []
    for c in s:
        m = conv(c)
        out.append(m if len(m) == 1 else (c if conv is str.upper else m[0]))
    return "".join(out)


def _truncate(s: str, n: int) -> str:
    b = s.encode("utf-8", "surrogatepass")
    if len(b) < n:
        return s
    if n < 0:
        raise _FuncError(f"runtime error: slice bounds out of range [:{n}]")
    return b[:n].decode("utf-8", "replace")


def _pad_fn(s: str, prefix: int, suffix: int) -> str:
    if not s:
        return s
    if prefix < 0 or suffix < 0:
        raise _FuncError("strings: negative Repeat count")
    if prefix + suffix > 64 << 20:  # Go runs out of memory here
        raise _FuncError("strings: Repeat output length overflow")
    return " " * prefix + s + " " * suffix


def _html(*args: Any) -> str:
    s = go_sprint(args) if not (len(args) == 1 and isinstance(args[0], str)) else args[0]
    rep = {"&": "&amp;", "'": "&#39;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "\0": "\ufffd"}
    return "".join(rep.get(c, c) for c in s)


def _urlquery(*args: Any) -> str:
    from urllib.parse import quote_plus

    s = go_sprint(args) if not (len(args) == 1 and isinstance(args[0], str)) else args[0]
    return quote_plus(s, safe="-_.~")


def _and(*args: Any) -> Any:  # evaluated lazily by the caller; here for arity only
    raise AssertionError


FUNCS: dict[str, _Func] = {
    "and": _Func(_and, ("value",), "value", raw=True),
    "or": _Func(_and, ("value",), "value", raw=True),
    "not": _Func(lambda v: not _truth(v), ("value",), raw=True),
    "len": _Func(_len, ("value",)),
    "index": _Func(_index, ("value",), "value"),
    "slice": _Func(_slice, ("value",), "value"),
    "eq": _Func(_eq, ("value",), "value", raw=True),
    "ne": _Func(lambda a, b: not _eq(a, b), ("value", "value"), raw=True),
    "lt": _Func(_lt, ("value", "value")),
    "le": _Func(lambda a, b: _lt(a, b) or _eq(a, b), ("value", "value")),
    "gt": _Func(lambda a, b: not (_lt(a, b) or _eq(a, b)), ("value", "value")),
    "ge": _Func(lambda a, b: not _lt(a, b), ("value", "value")),
    "print": _Func(lambda *a: go_sprint(a), (), "any"),
    "printf": _Func(lambda f, *a: go_sprintf(f, a), ("string",), "any"),
    "println": _Func(lambda *a: " ".join(go_print(x) for x in a) + "\n", (), "any"),
    "html": _Func(_html, (), "any"),
    "urlquery": _Func(_urlquery, (), "any"),
    # docker's own (github.com/docker/cli/templates)
    "json": _Func(lambda v: go_json(v), ("any",)),
    "split": _Func(lambda s, sep: s.split(sep) if sep else list(s), ("string", "string")),
    "join": _Func(lambda xs, sep: sep.join(xs), ("[]string", "string")),
    "title": _Func(_title, ("string",)),
    "lower": _Func(lambda s: _case(s, str.lower), ("string",)),
    "upper": _Func(lambda s: _case(s, str.upper), ("string",)),
    "pad": _Func(_pad_fn, ("string", "int", "int")),
    "truncate": _Func(_truncate, ("string", "int")),
}

#: docker's header functions: a ``table`` header shows the column, not its value.
HEADER_FUNCS: dict[str, _Func] = {
    "json": _Func(lambda v: v, ("string",)),
    "split": _Func(lambda v, _s: v, ("string", "string")),
    "join": _Func(lambda v, _s: v, ("string", "string")),
    "title": _Func(lambda v: v, ("string",)),
    "lower": _Func(lambda v: v, ("string",)),
    "upper": _Func(lambda v: v, ("string",)),
    "truncate": _Func(lambda v, _n: v, ("string", "int")),
}
