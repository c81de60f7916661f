"""Go's fmt verbs for ``printf`` and ``print``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from kanal.cli.gotemplate.values import MISSING, _public, go_float, go_print, go_quote, go_type


class _Spec(NamedTuple):
    minus: bool
    plus: bool
    sharp: bool
    space: bool
    zero: bool
    width: int | None
    prec: int | None
    verb: str


def _pad(s: str, spec: _Spec, numeric: bool = False) -> str:
    if spec.width is None or len(s) >= spec.width:
        return s
    fill = spec.width - len(s)
    if spec.minus:
        return s + " " * fill
    if spec.zero and numeric:
        sign = s[0] if s[:1] in "+- " and s[:1] else ""
        return sign + "0" * fill + s[len(sign) :]
    return " " * fill + s


def _bad(spec: _Spec, v: Any) -> str:
    if v is None:
        return f"%!{spec.verb}(<nil>)"
    return f"%!{spec.verb}({go_type(v)}={go_print(v)})"


def _fmt_int(n: int, spec: _Spec) -> str:
    verb = spec.verb
    if verb == "c":
        return _pad(chr(n) if 0 <= n < 0x110000 else "\ufffd", spec)
    if verb == "q":
        return _pad("'" + go_quote(chr(n))[1:-1].replace("'", "\\'") + "'", spec)
    if verb == "U":
        return _pad(f"U+{n:04X}", spec)
    base = {"d": 10, "v": 10, "b": 2, "o": 8, "O": 8, "x": 16, "X": 16}.get(verb)
    if base is None:
        return _bad(spec, n)
    digits = {2: "b", 8: "o", 10: "d", 16: "x"}[base]
    body = format(abs(n), digits)
    if verb == "X":
        body = body.upper()
    if spec.prec is not None:
        body = body.zfill(spec.prec) if spec.prec or n else ""
    prefix = ""
    if spec.sharp or verb == "O":
        prefix = {"b": "0b", "o": "0", "O": "0o", "x": "0x", "X": "0X"}.get(verb, "")
        if verb == "o" and body.startswith("0"):
            prefix = ""
    sign = "-" if n < 0 else ("+" if spec.plus else (" " if spec.space else ""))
    return _pad(sign + prefix + body, spec, numeric=spec.prec is None)


def _fmt_float(f: float, spec: _Spec) -> str:
    verb = spec.verb
    if verb in "xX" and spec.prec is None and f == f and abs(f) != float("inf"):
        mant, _, exp = f.hex().partition("p")  # Go: -0x1.cp+01
        mant = mant.rstrip("0").rstrip(".")
        e = int(exp)
        s = f"{mant}p{'-' if e < 0 else '+'}{abs(e):02d}"
        return _pad(s.upper() if verb == "X" else s, spec, numeric=True)
    if verb not in ("v", "g", "G", "e", "E", "f", "F"):
        return _bad(spec, f)
    if verb in "vgG" and spec.prec is None:
        s = go_float(f)
        if verb == "G":
            s = s.upper()
    else:
        prec = 6 if spec.prec is None else spec.prec
        s = ("%." + str(prec) + ("g" if verb == "v" else verb.lower())) % f
        if verb in "EG":
            s = s.upper()
    s = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN", "INF": "+Inf", "-INF": "-Inf"}.get(s, s)
    if spec.plus and not s.startswith(("-", "+")):
        s = "+" + s
    elif spec.space and not s.startswith(("-", "+")):
        s = " " + s
    return _pad(s, spec, numeric=True)


def _fmt_str(s: str, spec: _Spec) -> str:
    verb = spec.verb
    if verb in "sv":
        if spec.prec is not None:
            s = s[: spec.prec]
        return _pad(s, spec)
    if verb == "q":
        if spec.prec is not None:
            s = s[: spec.prec]
        if spec.sharp and "`" not in s and all(c.isprintable() or c == "\t" for c in s):
            return _pad("`" + s + "`", spec)
        return _pad(go_quote(s), spec)
    if verb in "xX":
        b = s.encode("utf-8", "surrogatepass")
        if spec.prec is not None:
            b = b[: spec.prec]
        parts = [format(x, "02x") for x in b]
        if spec.space:
            out = " ".join(("0x" + p if spec.sharp else p) for p in parts)
        else:
            out = ("0x" if spec.sharp and parts else "") + "".join(parts)
        return _pad(out.upper() if verb == "X" else out, spec)
    return _bad(spec, s)


def _fmt_value(v: Any, spec: _Spec) -> str:
    verb = spec.verb
    if v is None or v is MISSING:
        if verb == "v":
            return _pad("<nil>", spec)
        return f"%!{verb}(<nil>)"
    if isinstance(v, bool):
        if verb in "vt":
            return _pad("true" if v else "false", spec)
        return _bad(spec, v)
    if isinstance(v, int):
        return _fmt_int(v, spec)
    if isinstance(v, float):
        return _fmt_float(v, spec)
    if isinstance(v, str):
        return _fmt_str(v, spec)
    if isinstance(v, Mapping):
        items = sorted(_public(v), key=lambda kv: str(kv[0]))
        inner = " ".join(f"{_fmt_value(k, spec)}:{_fmt_value(x, spec)}" for k, x in items)
        return "map[" + inner + "]"
    if isinstance(v, list | tuple):
        return "[" + " ".join(_fmt_value(x, spec) for x in v) + "]"
    return _pad(go_print(v), spec)


_MAX_WIDTH = 1_000_000  # Go's fmt takes no width or precision above this (tooLarge)


def _parsenum(fmt: str, i: int) -> tuple[int | None, int]:
    """Go's parsenum: the number at ``i`` and the index after it; a number too
    large for a width swallows the rest of the format (Go then says NOVERB)."""
    num: int | None = None
    while i < len(fmt) and "0" <= fmt[i] <= "9":
        if num is not None and num > _MAX_WIDTH:
            return None, len(fmt)
        num = (num or 0) * 10 + int(fmt[i])
        i += 1
    return num, i


def _int_arg(a: Any) -> bool:
    return isinstance(a, int) and not isinstance(a, bool) and -_MAX_WIDTH <= a <= _MAX_WIDTH


def go_sprintf(fmt: str, args: Sequence[Any]) -> str:
    """Go's fmt.Sprintf for the verbs templates use (``%v %s %q %d %t %x %X %o %b
    %e %f %g %c %U``, flags ``-+# 0``, width, precision, ``*``)."""
    out: list[str] = []
    i, n, argi = 0, len(fmt), 0
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        flags = {"-": False, "+": False, "#": False, " ": False, "0": False}
        while i < n and fmt[i] in flags:
            flags[fmt[i]] = True
            i += 1
        width: int | None = None
        prec: int | None = None
        if i < n and fmt[i] == "*":
            i += 1
            if argi < len(args) and _int_arg(args[argi]):
                width = int(args[argi])
                if width < 0:
                    flags["-"], width = True, -width
            else:
                out.append("%!(BADWIDTH)")
            argi += 1
        else:
            width, i = _parsenum(fmt, i)
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                i += 1
                if argi < len(args) and _int_arg(args[argi]):
                    prec = max(int(args[argi]), 0)
                else:
                    out.append("%!(BADPREC)")
                argi += 1
            else:
                prec, i = _parsenum(fmt, i)
                prec = prec or 0
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        spec = _Spec(
            flags["-"], flags["+"], flags["#"], flags[" "], flags["0"] and not flags["-"],
            width, prec, verb,
        )  # fmt: skip
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.append(_pad(go_type(arg, True), spec) if verb == "T" else _fmt_value(arg, spec))
    if argi < len(args):
        extra = ", ".join(
            "<nil>" if a is None else f"{go_type(a, True)}={go_print(a)}" for a in args[argi:]
        )
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def go_sprint(args: Sequence[Any]) -> str:
    """fmt.Sprint: a space between operands when neither is a string."""
    out: list[str] = []
    for k, a in enumerate(args):
        if k and not isinstance(a, str) and not isinstance(args[k - 1], str):
            out.append(" ")
        out.append(go_print(a))
    return "".join(out)
