"""The lexer: template text to tokens, with Go's positions and messages."""

from __future__ import annotations

from typing import NamedTuple

from kanal.cli.gotemplate.values import go_quote

_SPACE = " \t\r\n"
_KEYWORDS = frozenset(
    ["block", "break", "continue", "define", "else", "end", "if", "range", "template", "with"]
)


class _Tok(NamedTuple):
    kind: str  # text left right space field dot var ident kw string raw char number bool nil
    #            ( ) | := = , char-other eof error
    val: str
    pos: int


def _alnum(c: str) -> bool:
    return c == "_" or c.isalnum()


def _right_delim(s: str, i: int) -> tuple[bool, bool]:
    """(at "}}", with a trim marker " -}}")"""
    if s[i : i + 1] in _SPACE and s[i : i + 1] and s.startswith("-}}", i + 1):
        return True, True
    return s.startswith("}}", i), False


def _go_rune(c: str) -> str:
    """Go's %#U: ``U+0021 '!'``."""
    return f"U+{ord(c):04X} '{c}'" if c.isprintable() else f"U+{ord(c):04X}"


# long: one state machine over the text; its states share the position and the token list
def _lex(s: str) -> list[_Tok]:
    toks: list[_Tok] = []
    n, i = len(s), 0

    def err(msg: str, at: int) -> list[_Tok]:
        toks.append(_Tok("error", msg, at))
        return toks

    while i < n:
        j = s.find("{{", i)
        if j < 0:
            toks.append(_Tok("text", s[i:], i))
            break
        trim = s.startswith("-", j + 2) and s[j + 3 : j + 4] in _SPACE and j + 3 < n
        text = s[i:j].rstrip(_SPACE) if trim else s[i:j]
        if text:
            toks.append(_Tok("text", text, i))
        k = j + 2 + (2 if trim else 0)
        if s.startswith("/*", k):  # a comment
            e = s.find("*/", k + 2)
            if e < 0:
                return err("unclosed comment", k)
            e += 2
            delim, rtrim = _right_delim(s, e)
            if not delim:
                return err("comment ends before closing delimiter", e)
            i = e + (4 if rtrim else 2)
            if rtrim:
                while i < n and s[i] in _SPACE:
                    i += 1
            continue
        toks.append(_Tok("left", "{{", j))
        i, depth = k, 0
        while True:  # inside the action
            delim, rtrim = _right_delim(s, i)
            if delim:
                if depth:
                    return err("unclosed left paren", i)
                i += 4 if rtrim else 2
                toks.append(_Tok("right", "}}", i - 2))
                if rtrim:
                    while i < n and s[i] in _SPACE:
                        i += 1
                break
            if i >= n:
                return err("unclosed action", i)
            c, start = s[i], i
            if c in _SPACE:
                while i < n and s[i] in _SPACE:
                    i += 1
                d, t = _right_delim(s, i - 1)
                if d and t:  # " -}}": the last space belongs to the marker
                    i -= 1
                    if i == start:
                        continue
                toks.append(_Tok("space", s[start:i], start))
                continue
            i += 1
            if c == "=":
                toks.append(_Tok("=", c, start))
            elif c == ":":
                if not s.startswith("=", i):
                    return err("expected :=", i)
                i += 1
                toks.append(_Tok(":=", ":=", start))
            elif c == "|":
                toks.append(_Tok("|", c, start))
            elif c in "\"`'":
                kind, what = {
                    '"': ("string", "unterminated quoted string"),
                    "`": ("raw", "unterminated raw quoted string"),
                    "'": ("char", "unterminated character constant"),
                }[c]
                while True:
                    if i >= n or (c != "`" and s[i] == "\n"):
                        return err(what, i)
                    ch = s[i]
                    i += 1
                    if ch == "\\" and c != "`":
                        if i >= n or s[i] == "\n":
                            return err(what, i)
                        i += 1
                    elif ch == c:
                        break
                toks.append(_Tok(kind, s[start:i], start))
            elif c in "$." and not (c == "." and i < n and s[i].isdigit()):
                while i < n and _alnum(s[i]):
                    i += 1
                if not _at_terminator(s, i):
                    return err(f"bad character {_go_rune(s[i])}", i)
                word = s[start:i]
                kind = "var" if c == "$" else ("dot" if word == "." else "field")
                toks.append(_Tok(kind, word, start))
            elif c in "+-." or c.isdigit():
                i = _scan_number(s, start)
                if i < 0:
                    return err(f"bad number syntax: {go_quote(s[start:-i])}", -i)
                toks.append(_Tok("number", s[start:i], start))
            elif _alnum(c):
                while i < n and _alnum(s[i]):
                    i += 1
                if not _at_terminator(s, i):
                    return err(f"bad character {_go_rune(s[i])}", i)
                word = s[start:i]
                if word in _KEYWORDS:
                    kind = "kw"
                elif word in ("true", "false"):
                    kind = "bool"
                else:
                    kind = "nil" if word == "nil" else "ident"
                toks.append(_Tok(kind, word, start))
            elif c == "(":
                depth += 1
                toks.append(_Tok("(", c, start))
            elif c == ")":
                depth -= 1
                if depth < 0:
                    return err("unexpected right paren", start)
                toks.append(_Tok(")", c, start))
            elif c.isascii() and c.isprintable():
                toks.append(_Tok("," if c == "," else "char-other", c, start))
            else:
                return err(f"unrecognized character in action: {_go_rune(c)}", start)
    toks.append(_Tok("eof", "", n))
    return toks


def _at_terminator(s: str, i: int) -> bool:
    return i >= len(s) or s[i] in _SPACE or s[i] in ".,|:()" or s.startswith("}}", i)


def _scan_number(s: str, i: int) -> int:
    """End of the number at ``i`` (Go's scanNumber), or minus the bad end."""
    n = len(s)

    def accept(chars: str) -> bool:
        nonlocal i
        if i < n and s[i] in chars:
            i += 1
            return True
        return False

    def run(chars: str) -> None:
        nonlocal i
        while i < n and s[i] in chars:
            i += 1

    accept("+-")
    digits = "0123456789_"
    if accept("0"):
        if accept("xX"):
            digits = "0123456789abcdefABCDEF_"
        elif accept("oO"):
            digits = "01234567_"
        elif accept("bB"):
            digits = "01_"
    run(digits)
    if accept("."):
        run(digits)
    if len(digits) == 11 and accept("eE"):
        accept("+-")
        run("0123456789_")
    if len(digits) == 23 and accept("pP"):
        accept("+-")
        run("0123456789_")
    accept("i")
    if i < n and _alnum(s[i]):
        return -(i + 1)
    return i
