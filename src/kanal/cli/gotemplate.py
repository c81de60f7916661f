"""Go's text/template, the part docker users write in ``--format``.

A lexer, a parser to a small tree and an evaluator with Go's semantics, run on
the decoded JSON of kanal's API (dicts, lists, str, int, float, bool, None):

* actions ``{{.A.B}}``, ``$`` and ``$x := ...`` / ``$x = ...``, pipelines ``|``,
  parentheses, ``if/else if/else``, ``with/else with``, ``range`` (lists, maps in
  sorted key order, integers; ``$i, $v :=``; ``else``; ``break``/``continue``),
  trim markers ``{{- `` / `` -}}``, comments, string/raw/char/number/bool/nil literals;
* Go's functions ``and or not len index slice eq ne lt le gt ge print printf
  println html urlquery`` and docker's ``json split join title lower upper pad
  truncate``.

Where a JSON object stands for one of docker's Go structs (its keys are all Go
exported names, see :func:`is_struct`), a missing field is an error, and the Go
field name is accepted where docker's JSON key differs (``.ID`` for ``Id``). Any
other object is a Go map: a missing key is ``<no value>``, ``index`` of a missing
key is the zero value. Values print as Go's ``fmt`` prints the decoded JSON
(``map[k:v]``, ``[a b]``, ``<no value>``). Every error is one line in Go's words
(``template: :1:2: executing "" at <.Foo>: ...``), raised as InvalidConfig.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, NoReturn

from kanal.errors import InvalidConfig

__all__ = [
    "HEADER_FUNCS",
    "MISSING",
    "GoMap",
    "Template",
    "go_json",
    "go_print",
    "go_quote",
    "is_struct",
    "parse",
]


class _Missing:
    """Go's invalid reflect.Value: a key that a map does not have."""

    def __repr__(self) -> str:
        return "<no value>"


MISSING: Any = _Missing()


class GoMap(dict[str, Any]):
    """A dict that is a Go map whatever its keys (a table header, say)."""


class TemplateError(InvalidConfig):
    pass


# --- lexer -----------------------------------------------------------------------------

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


# --- parse tree ----------------------------------------------------------------------


class _Node:
    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos


class _Text(_Node):
    __slots__ = ("text",)

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(pos)
        self.text = text

    def __str__(self) -> str:
        return go_quote(self.text)


class _Field(_Node):
    __slots__ = ("ident",)

    def __init__(self, pos: int, ident: list[str]) -> None:
        super().__init__(pos)
        self.ident = ident

    def __str__(self) -> str:
        return "".join("." + x for x in self.ident)


class _Var(_Node):
    __slots__ = ("ident",)

    def __init__(self, pos: int, ident: list[str]) -> None:
        super().__init__(pos)
        self.ident = ident

    def __str__(self) -> str:
        return ".".join(self.ident)


class _Dot(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "."


class _Nil(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "nil"


class _Ident(_Node):
    __slots__ = ("name",)

    def __init__(self, pos: int, name: str) -> None:
        super().__init__(pos)
        self.name = name

    def __str__(self) -> str:
        return self.name


class _Const(_Node):
    """A literal: string, number, bool. ``value`` is its Go value."""

    __slots__ = ("is_float", "is_int", "text", "value")

    def __init__(self, pos: int, text: str, value: Any, is_int: bool = False) -> None:
        super().__init__(pos)
        self.text, self.value, self.is_int = text, value, is_int
        self.is_float = isinstance(value, float)

    def __str__(self) -> str:
        return self.text


class _Chain(_Node):
    __slots__ = ("field", "node")

    def __init__(self, pos: int, node: _Node, field: list[str]) -> None:
        super().__init__(pos)
        self.node, self.field = node, field

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, _Pipe) else str(self.node)
        return inner + "".join("." + x for x in self.field)


class _Command(_Node):
    __slots__ = ("args",)

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.args: list[_Node] = []

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, _Pipe) else str(a) for a in self.args)


class _Pipe(_Node):
    __slots__ = ("cmds", "decl", "is_assign")

    def __init__(self, pos: int, decl: list[_Var], is_assign: bool) -> None:
        super().__init__(pos)
        self.decl, self.is_assign = decl, is_assign
        self.cmds: list[_Command] = []

    def __str__(self) -> str:
        head = ""
        if self.decl:
            head = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return head + " | ".join(str(c) for c in self.cmds)


class _Action(_Node):
    __slots__ = ("pipe",)

    def __init__(self, pos: int, pipe: _Pipe) -> None:
        super().__init__(pos)
        self.pipe = pipe

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


class _Control(_Node):
    __slots__ = ("body", "kind", "orelse", "pipe")

    def __init__(
        self, kind: str, pipe: _Pipe, body: list[_Node], orelse: list[_Node] | None
    ) -> None:
        super().__init__(pipe.pos)
        self.kind, self.pipe, self.body, self.orelse = kind, pipe, body, orelse

    def __str__(self) -> str:
        return "{{" + self.kind + " " + str(self.pipe) + "}}"


class _Jump(_Node):
    """``{{break}}`` or ``{{continue}}``."""

    __slots__ = ("kind",)

    def __init__(self, pos: int, kind: str) -> None:
        super().__init__(pos)
        self.kind = kind

    def __str__(self) -> str:
        return "{{" + self.kind + "}}"


class _TemplateCall(_Node):
    """``{{template "name" pipeline}}``"""

    __slots__ = ("name", "pipe", "quoted")

    def __init__(self, pos: int, name: str, quoted: str, pipe: _Pipe | None) -> None:
        super().__init__(pos)
        self.name, self.quoted, self.pipe = name, quoted, pipe

    def __str__(self) -> str:
        tail = f" {self.pipe}" if self.pipe is not None else ""
        return "{{template " + self.quoted + tail + "}}"


class _End(_Node):
    __slots__ = ("kind",)

    def __init__(self, pos: int, kind: str) -> None:
        super().__init__(pos)
        self.kind = kind  # "end" | "else"

    def __str__(self) -> str:
        return "{{" + self.kind + "}}"


# --- parser ----------------------------------------------------------------------------


def _describe(t: _Tok) -> str:
    """How Go's parser names a token in its errors."""
    if t.kind == "eof":
        return "EOF"
    if t.kind == "error":
        return t.val
    if t.kind in ("kw", "dot", "nil"):
        return f"<{t.val}>"
    if len(t.val) > 10:
        return f"{go_quote(t.val[:10])}..."
    return go_quote(t.val)


class _Parser:
    def __init__(self, text: str, funcs: Mapping[str, Any]) -> None:
        self.text = text
        self.toks = _lex(text)
        self.i = 0
        self.funcs = funcs
        self.vars = ["$"]
        self.range_depth = 0
        self.last = self.toks[0]
        self.templates: dict[str, list[_Node]] = {}

    # tokens
    def next(self) -> _Tok:
        t = self.toks[self.i]
        if t.kind == "error":
            self.last = t
            self.error(t.val)
        self.i += 1
        self.last = t
        return t

    def backup(self, k: int = 1) -> None:
        self.i -= k

    def peek(self) -> _Tok:
        t = self.next()
        self.backup()
        return t

    def next_non_space(self) -> _Tok:
        t = self.next()
        while t.kind == "space":
            t = self.next()
        return t

    def peek_non_space(self) -> _Tok:
        t = self.next_non_space()
        self.backup()
        return t

    def error(self, msg: str) -> NoReturn:
        line = self.text.count("\n", 0, self.last.pos) + 1
        raise TemplateError(f"template: :{line}: {msg}")

    def unexpected(self, t: _Tok, context: str) -> NoReturn:
        if t.kind == "error":
            self.error(t.val)
        self.error(f"unexpected {_describe(t)} in {context}")

    def expect(self, kind: str, context: str) -> _Tok:
        t = self.next_non_space()
        if t.kind != kind:
            self.unexpected(t, context)
        return t

    # structure
    def parse(self) -> list[_Node]:
        out: list[_Node] = []
        while self.peek().kind != "eof":
            if self.peek().kind == "left":  # {{define}} is allowed at the top only
                save = self.i
                self.next()
                t = self.next_non_space()
                if t.kind == "kw" and t.val == "define":
                    self.definition("define clause", None)
                    continue
                self.i = save
            n = self.text_or_action()
            if isinstance(n, _End):
                self.error(f"unexpected {n}")
            out.append(n)
        return out

    def item_list(self) -> tuple[list[_Node], _End]:
        out: list[_Node] = []
        while self.peek_non_space().kind != "eof":
            n = self.text_or_action()
            if isinstance(n, _End):
                return out, n
            out.append(n)
        self.error("unexpected EOF")

    def text_or_action(self) -> _Node:
        t = self.next()
        if t.kind == "text":
            return _Text(t.pos, t.val)
        if t.kind == "left":
            return self.action()
        self.unexpected(t, "input")

    def action(self) -> _Node:
        t = self.next_non_space()
        if t.kind == "kw":
            if t.val in ("if", "with", "range"):
                return self.control(t.val)
            if t.val == "end":
                self.expect("right", "end")
                return _End(t.pos, "end")
            if t.val == "else":
                p = self.peek_non_space()
                if not (p.kind == "kw" and p.val in ("if", "with")):
                    self.expect("right", "else")
                return _End(t.pos, "else")
            if t.val in ("template", "block"):
                return self.template_control(t.val)
            if t.val in ("break", "continue"):
                if not self.range_depth:
                    self.error(f"{{{{{t.val}}}}} outside {{{{range}}}}")
                self.expect("right", t.val)
                return _Jump(t.pos, t.val)
        self.backup()
        return _Action(t.pos, self.pipeline("command", "right"))

    def template_name(self, context: str) -> tuple[_Tok, str]:
        t = self.next_non_space()
        if t.kind not in ("string", "raw"):
            self.unexpected(t, context)
        return t, self.unquote(t.val)

    def definition(self, context: str, name_tok: tuple[_Tok, str] | None) -> None:
        tok, name = name_tok or self.template_name(context)
        if name_tok is None:
            self.expect("right", context)
        saved, self.vars = self.vars, ["$"]
        try:
            body, end = self.item_list()
        finally:
            self.vars = saved
        if end.kind != "end":
            self.error(f"unexpected {end} in {context}")
        self.templates[name] = body

    def template_control(self, kind: str) -> _TemplateCall:
        context = f"{kind} clause"
        tok, name = self.template_name(context)
        pipe = None
        if self.next_non_space().kind != "right":
            self.backup()
            pipe = self.pipeline(context, "right")
        if kind == "block":
            self.definition(context, (tok, name))
        return _TemplateCall(tok.pos, name, tok.val, pipe)

    def control(self, kind: str) -> _Control:
        mark = len(self.vars)
        try:
            pipe = self.pipeline(kind, "right")
            if kind == "range":
                self.range_depth += 1
            body, end = self.item_list()
            if kind == "range":
                self.range_depth -= 1
            orelse: list[_Node] | None = None
            if end.kind == "else":
                p = self.peek()
                if kind in ("if", "with") and p.kind == "kw" and p.val == kind:
                    self.next()
                    orelse = [self.control(kind)]
                else:
                    orelse, end = self.item_list()
                    if end.kind != "end":
                        self.error(f"expected end; found {end}")
            return _Control(kind, pipe, body, orelse)
        finally:
            del self.vars[mark:]

    def pipeline(self, context: str, end: str) -> _Pipe:
        start = self.peek_non_space()
        decl: list[_Var] = []
        is_assign = False
        while True:
            v = self.peek_non_space()
            if v.kind != "var":
                break
            save = self.i
            self.next()
            nxt = self.peek_non_space()
            if nxt.kind in (":=", "="):
                self.next()
                is_assign = nxt.kind == "="
                decl.append(_Var(v.pos, [v.val]))
                self.vars.append(v.val)
                break
            if nxt.kind == ",":
                self.next()
                decl.append(_Var(v.pos, [v.val]))
                self.vars.append(v.val)
                if context == "range" and len(decl) < 2:
                    if self.peek_non_space().kind in ("var", "right", ")"):
                        continue
                    self.error("range can only initialize variables")
                self.error(f"too many declarations in {context}")
            self.i = save  # not a declaration: the variable is an operand
            break
        pipe = _Pipe(start.pos, decl, is_assign)
        while True:
            t = self.next_non_space()
            if t.kind == end:
                if not pipe.cmds:
                    self.error(f"missing value for {context}")
                for k, c in enumerate(pipe.cmds[1:]):
                    if isinstance(c.args[0], _Const | _Dot | _Nil):
                        self.error(f"non executable command in pipeline stage {k + 2}")
                return pipe
            if t.kind in (
                "bool", "char", "dot", "field", "ident", "number", "nil", "raw", "string",
                "var", "(",
            ):  # fmt: skip
                self.backup()
                pipe.cmds.append(self.command())
            else:
                self.unexpected(t, context)

    def command(self) -> _Command:
        cmd = _Command(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            op = self.operand()
            if op is not None:
                cmd.args.append(op)
            t = self.next()
            if t.kind == "space":
                continue
            if t.kind in ("right", ")"):
                self.backup()
            elif t.kind != "|":
                self.unexpected(t, "operand")
            break
        if not cmd.args:
            self.error("empty command")
        return cmd

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().kind == "field":
            pos = self.peek().pos
            fields: list[str] = []
            while self.peek().kind == "field":
                fields.append(self.next().val[1:])
            if isinstance(node, _Field):
                return _Field(pos, node.ident + fields)
            if isinstance(node, _Var):
                return _Var(pos, node.ident + fields)
            if isinstance(node, _Const | _Nil | _Dot):
                self.error(f"unexpected . after term {go_quote(str(node))}")
            return _Chain(pos, node, fields)
        return node

    def term(self) -> _Node | None:
        t = self.next_non_space()
        k = t.kind
        if k == "ident":
            if t.val not in self.funcs:
                self.error(f"function {go_quote(t.val)} not defined")
            return _Ident(t.pos, t.val)
        if k == "dot":
            return _Dot(t.pos)
        if k == "nil":
            return _Nil(t.pos)
        if k == "var":
            if t.val not in self.vars:
                self.error(f"undefined variable {go_quote(t.val)}")
            return _Var(t.pos, [t.val])
        if k == "field":
            return _Field(t.pos, [t.val[1:]])
        if k == "bool":
            return _Const(t.pos, t.val, t.val == "true")
        if k in ("number", "char"):
            return self.number(t)
        if k == "(":
            return self.pipeline("parenthesized pipeline", ")")
        if k in ("string", "raw"):
            return _Const(t.pos, t.val, self.unquote(t.val))
        self.backup()
        return None

    def unquote(self, q: str) -> str:
        try:
            return _unquote(q)
        except ValueError:
            self.error("invalid syntax")

    def number(self, t: _Tok) -> _Const:
        text = t.val
        if t.kind == "char":
            s = self.unquote(text)
            if len(s) != 1:
                self.error(f"malformed character constant: {text}")
            return _Const(t.pos, text, ord(s), is_int=True)
        if text.endswith("i"):
            self.error(f"complex numbers are not supported: {text}")
        clean = text.replace("_", "")
        try:
            ival = int(clean, 8) if _is_legacy_octal(clean) else int(clean, 0)
            return _Const(t.pos, text, ival, is_int=True)
        except ValueError:
            pass
        try:
            fval = float.fromhex(clean) if "x" in clean.lower() else float(clean)
        except (ValueError, OverflowError):
            self.error(f"illegal number syntax: {go_quote(text)}")
        return _Const(t.pos, text, fval, is_int=fval.is_integer())


def _is_legacy_octal(s: str) -> bool:
    d = s.lstrip("+-")
    return len(d) > 1 and d[0] == "0" and d.isdigit()


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _unquote(q: str) -> str:
    """Go's strconv.Unquote for "...", `...` and '...'. ValueError when invalid."""
    quote, body = q[0], q[1:-1]
    if quote == "`":
        return body.replace("\r", "")
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        i += 1
        if c == quote:
            raise ValueError(q)
        if c != "\\":
            out.append(c)
            continue
        if i >= n:
            raise ValueError(q)
        e = body[i]
        i += 1
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
        elif e == "\\" or e == quote:
            out.append(e)
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i : i + width]
            if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError(q)
            out.append(chr(int(digits, 16)))
            i += width
        elif e in "01234567":
            digits = body[i - 1 : i + 2]
            if len(digits) != 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                raise ValueError(q)
            out.append(chr(int(digits, 8)))
            i += 2
        else:
            raise ValueError(q)
    return "".join(out)


# --- values: Go's fmt and encoding/json --------------------------------------------------

_GO_NAMES = {  # docker's Go field name -> its JSON key, where the two differ
    "ID": "Id",
    "AuxAddress": "AuxiliaryAddresses",
    "HostIP": "HostIp",
    "DNS": "Dns",
    "DNSOptions": "DnsOptions",
    "DNSSearch": "DnsSearch",
    "CPUShares": "CpuShares",
    "CPUPeriod": "CpuPeriod",
    "CPUQuota": "CpuQuota",
    "CPURealtimePeriod": "CpuRealtimePeriod",
    "CPURealtimeRuntime": "CpuRealtimeRuntime",
    "CPUCount": "CpuCount",
    "CPUPercent": "CpuPercent",
}


#: Fields docker leaves out of the JSON when empty (``omitempty``), with the zero
#: value its Go struct still has: ``{{.Gateway}}`` of a subnet without one is "".
_OMITTED: dict[str, Any] = {
    "IPRange": "",
    "Gateway": "",
    "AuxiliaryAddresses": GoMap(),
    "Peers": (),
    "Services": GoMap(),
    "MacAddress": "",
    "StopSignal": "",
    "Shell": (),
}


def _exported(k: Any) -> bool:
    return isinstance(k, str) and k[:1].isupper() and k.isidentifier()


def is_struct(d: Mapping[str, Any]) -> bool:
    """Does this JSON object stand for a Go struct (rather than a map)?

    Docker's structs marshal to objects whose keys are all exported Go names
    (``Name``, ``IPAM``, ``EnableIPv6``); its maps (labels, options, containers by
    ID, networks by name, ports) have keys of any form. An empty object is a map.
    """
    if isinstance(d, GoMap):
        return False
    keys = [k for k in d if not (isinstance(k, str) and k.startswith("__"))]
    return bool(keys) and all(_exported(k) for k in keys)


def _public(d: Mapping[str, Any]) -> list[tuple[Any, Any]]:
    return [(k, v) for k, v in d.items() if not (isinstance(k, str) and k.startswith("__"))]


def go_type(v: Any, typed: bool = False) -> str:
    """The Go type of a value: as decoded from JSON (what docker's errors name, as
    they come from its retry on the raw JSON), or with ``typed`` as docker's own
    structs have it (``%T``: string maps and lists are ``map[string]string``,
    ``[]string``)."""
    if v is None or v is MISSING:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Mapping):
        strings = all(isinstance(x, str) for _, x in _public(v))
        if typed and strings and not is_struct(v):
            return "map[string]string"
        return "map[string]interface {}"
    if isinstance(v, list | tuple):
        strings = bool(v) and all(isinstance(x, str) for x in v)
        return "[]string" if typed and strings else "[]interface {}"
    return type(v).__name__


def _shortest(f: float) -> tuple[str, int]:
    """Shortest decimal digits of abs(f) and the decimal point position."""
    r = repr(abs(f))
    mant, _, exp = r.partition("e")
    ip, _, fp = mant.partition(".")
    digits = (ip + fp).lstrip("0")
    dp = len(ip) + (int(exp) if exp else 0)
    if not digits:
        return "0", 1
    dp -= len(ip + fp) - len((ip + fp).lstrip("0"))
    return digits.rstrip("0") or "0", dp


def _fmt_e(neg: bool, digits: str, dp: int, upper: bool = False) -> str:
    exp = dp - 1
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if exp < 0 else "+"
    e = f"{'E' if upper else 'e'}{sign}{abs(exp):02d}"
    return ("-" if neg else "") + mant + e


def _fmt_f(neg: bool, digits: str, dp: int) -> str:
    if dp <= 0:
        s = "0." + "0" * (-dp) + digits
    elif dp >= len(digits):
        s = digits + "0" * (dp - len(digits))
    else:
        s = digits[:dp] + "." + digits[dp:]
    return ("-" if neg else "") + s


def go_float(f: float) -> str:
    """Go's %v of a float64 (strconv 'g', shortest)."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    neg = f < 0 or (f == 0 and str(f).startswith("-"))
    digits, dp = _shortest(f)
    if f == 0:
        return "-0" if neg else "0"
    exp = dp - 1
    if exp < -4 or exp >= 6:  # strconv: "shortest" decides with a precision of 6
        return _fmt_e(neg, digits, dp)
    return _fmt_f(neg, digits, dp)


def _json_float(f: float) -> str:
    if f != f or f in (float("inf"), float("-inf")):
        raise TemplateError(f"json: unsupported value: {go_float(f)}")
    if f == 0:
        return "-0" if str(f).startswith("-") else "0"
    neg = f < 0
    digits, dp = _shortest(f)
    if abs(f) < 1e-6 or abs(f) >= 1e21:
        s = _fmt_e(neg, digits, dp)
        return s[:-2] + s[-1] if s[-4:-1] in ("e-0", "e+0") else s
    return _fmt_f(neg, digits, dp)


_JSON_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b"}
_JSON_ESC.update({"\f": "\\f", "\u2028": "\\u2028", "\u2029": "\\u2029"})
_HTML_ESC = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def _json_str(s: str, html: bool = False) -> str:
    out = []
    for c in s:
        e = _JSON_ESC.get(c) or (_HTML_ESC.get(c) if html else None)
        if e:
            out.append(e)
        elif c < " ":
            out.append(f"\\u{ord(c):04x}")
        elif "\ud800" <= c <= "\udfff":
            out.append("\\ufffd")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def go_json(v: Any, *, sort_maps: bool = True, html: bool = False) -> str:
    """Go's encoding/json, compact: objects that are Go maps in sorted key order
    (``sort_maps``), others in their own order (a struct's field order)."""
    if v is None or v is MISSING:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _json_float(v)
    if isinstance(v, str):
        return _json_str(v, html)
    if isinstance(v, Mapping):
        items = _public(v)
        if sort_maps and not is_struct(v):
            items.sort(key=lambda kv: str(kv[0]))
        body = ",".join(
            _json_str(str(k), html) + ":" + go_json(x, sort_maps=sort_maps, html=html)
            for k, x in items
        )
        return "{" + body + "}"
    if isinstance(v, list | tuple):
        return "[" + ",".join(go_json(x, sort_maps=sort_maps, html=html) for x in v) + "]"
    raise TemplateError(f"json: unsupported type: {go_type(v)}")


def go_print(v: Any) -> str:
    """Go's fmt %v of a decoded JSON value (nil inside a map or list is ``<nil>``)."""
    if v is None:
        return "<nil>"
    if v is MISSING:
        return "<no value>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, Mapping):
        items = sorted(_public(v), key=lambda kv: str(kv[0]))
        return "map[" + " ".join(f"{go_print(k)}:{go_print(x)}" for k, x in items) + "]"
    if isinstance(v, list | tuple):
        return "[" + " ".join(go_print(x) for x in v) + "]"
    if callable(v):
        return "<func>"
    return str(v)


def go_quote(s: str) -> str:
    """Go's strconv.Quote."""
    out = ['"']
    for c in s:
        if c == '"' or c == "\\":
            out.append("\\" + c)
        elif c in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(c)])
        elif c.isprintable():
            out.append(c)
        elif ord(c) < 0x80:
            out.append(f"\\x{ord(c):02x}")
        elif "\ud800" <= c <= "\udfff":
            out.append("\\ufffd")
        elif ord(c) <= 0xFFFF:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    out.append('"')
    return "".join(out)


# --- printf: Go's fmt verbs -------------------------------------------------------------


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
            if argi < len(args) and isinstance(args[argi], int):
                width = int(args[argi])
                if width < 0:
                    flags["-"], width = True, -width
            else:
                out.append("%!(BADWIDTH)")
            argi += 1
        else:
            s = i
            while i < n and fmt[i].isdigit():
                i += 1
            width = int(fmt[s:i]) if i > s else None
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                i += 1
                if argi < len(args) and isinstance(args[argi], int):
                    prec = max(int(args[argi]), 0)
                else:
                    out.append("%!(BADPREC)")
                argi += 1
            else:
                s = i
                while i < n and fmt[i].isdigit():
                    i += 1
                prec = int(fmt[s:i]) if i > s else 0
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


# --- functions ---------------------------------------------------------------------------


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


# --- evaluator -------------------------------------------------------------------------


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _State:
    __slots__ = ("depth", "funcs", "missing", "node", "out", "templates", "text", "vars")

    def __init__(self, text: str, root: Any, funcs: Mapping[str, _Func]) -> None:
        self.text = text
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.out: list[str] = []
        self.node: _Node | None = None
        self.funcs = funcs
        self.missing: tuple[_Node, str] | None = None
        self.templates: Mapping[str, list[_Node]] = {}
        self.depth = 0

    def at(self, node: _Node) -> None:
        self.node = node

    def error(self, msg: str) -> NoReturn:
        if self.node is None:
            raise TemplateError(f"template: : {msg}")
        pos = self.node.pos
        before = self.text[:pos]
        nl = before.rfind("\n")
        col = (
            len(before[nl + 1 :].encode("utf-8", "surrogatepass"))
            if nl >= 0
            else len(before.encode("utf-8", "surrogatepass"))
        )
        line = before.count("\n") + 1
        ctx = str(self.node)
        raise TemplateError(f'template: :{line}:{col}: executing "" at <{ctx}>: {msg}')

    def no_entry(self) -> NoReturn:
        """A missing map key where Go needs a value. Docker's CLI then retries on
        the raw JSON, where the same key is an error of its own: report that one."""
        if self.missing is None:
            self.error("invalid value")
        self.at(self.missing[0])
        self.error(f"map has no entry for key {go_quote(self.missing[1])}")

    # variables
    def var(self, name: str) -> Any:
        for k in range(len(self.vars) - 1, -1, -1):
            if self.vars[k][0] == name:
                return self.vars[k][1]
        self.error(f"undefined variable: {name}")

    def set_var(self, name: str, value: Any) -> None:
        for k in range(len(self.vars) - 1, -1, -1):
            if self.vars[k][0] == name:
                self.vars[k] = (name, value)
                return
        self.error(f"undefined variable: {name}")

    # walking
    def walk(self, dot: Any, nodes: Iterable[_Node]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.text)
            elif isinstance(node, _Action):
                self.at(node)
                val = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.at(node)
                    self.out.append("<no value>" if val is None else go_print(val))
            elif isinstance(node, _Control):
                if node.kind == "range":
                    self.walk_range(dot, node)
                else:
                    self.walk_if_with(dot, node)
            elif isinstance(node, _Jump):
                raise _Break if node.kind == "break" else _Continue
            elif isinstance(node, _TemplateCall):
                self.walk_template(dot, node)

    def walk_template(self, dot: Any, node: _TemplateCall) -> None:
        self.at(node)
        body = self.templates.get(node.name)
        if body is None:
            self.error(f"template {go_quote(node.name)} not defined")
        if self.depth >= _MAX_DEPTH:
            self.error(f"exceeded maximum template depth ({_MAX_DEPTH})")
        new = MISSING if node.pipe is None else self.pipeline(dot, node.pipe)
        saved, self.vars = self.vars, [("$", new)]
        self.depth += 1
        try:
            self.walk(new, body)
        finally:
            self.vars = saved
            self.depth -= 1

    def walk_if_with(self, dot: Any, node: _Control) -> None:
        mark = len(self.vars)
        try:
            val = self.pipeline(dot, node.pipe)
            if _truth(val):
                self.walk(val if node.kind == "with" else dot, node.body)
            elif node.orelse is not None:
                self.walk(dot, node.orelse)
        finally:
            del self.vars[mark:]

    def walk_range(self, dot: Any, node: _Control) -> None:
        self.at(node)
        mark = len(self.vars)
        try:
            val = self.pipeline(dot, node.pipe)
            decl = node.pipe.decl
            items: list[tuple[Any, Any]]
            if val is None or val is MISSING:
                items = []
            elif isinstance(val, list | tuple):
                items = list(enumerate(val))
            elif isinstance(val, Mapping):
                items = sorted(_public(val), key=lambda kv: str(kv[0]))
            elif isinstance(val, int) and not isinstance(val, bool):
                if len(decl) > 1:
                    self.error(f"can't use {val} to iterate over more than one variable")
                items = [(k, k) for k in range(val)]
            else:
                self.error(f"range can't iterate over {go_print(val)}")
            inner = len(self.vars)
            for key, elem in items:
                if decl:
                    if node.pipe.is_assign:
                        if len(decl) > 1:
                            self.set_var(decl[0].ident[0], key)
                            self.set_var(decl[1].ident[0], elem)
                        else:
                            self.set_var(decl[0].ident[0], elem)
                    else:
                        self.vars[inner - 1] = (self.vars[inner - 1][0], elem)
                        if len(decl) > 1:
                            self.vars[inner - 2] = (self.vars[inner - 2][0], key)
                try:
                    self.walk(elem, node.body)
                except _Continue:
                    pass
                except _Break:
                    break
                finally:
                    del self.vars[inner:]
            if not items and node.orelse is not None:
                self.walk(dot, node.orelse)
        finally:
            del self.vars[mark:]

    # pipelines and commands
    def pipeline(self, dot: Any, pipe: _Pipe) -> Any:
        self.at(pipe)
        value: Any = MISSING
        final: Any = _NOFINAL
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, final)
            final = value
        for v in pipe.decl:
            if pipe.is_assign:
                self.set_var(v.ident[0], value)
            else:
                self.vars.append((v.ident[0], value))
        return value

    def not_a_function(self, args: Sequence[_Node], final: Any) -> None:
        if len(args) > 1 or final is not _NOFINAL:
            self.error(f"can't give argument to non-function {args[0]}")

    def command(self, dot: Any, cmd: _Command, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, _Field):
            self.at(first)
            return self.field_chain(dot, dot, first, first.ident, cmd.args, final)
        if isinstance(first, _Chain):
            self.at(first)
            if isinstance(first.node, _Nil):
                self.error(f"indirection through explicit nil in {first}")
            recv = self.arg(dot, "value", first.node)
            return self.field_chain(dot, recv, first, first.field, cmd.args, final)
        if isinstance(first, _Ident):
            return self.call(dot, first, cmd, cmd.args, final)
        if isinstance(first, _Pipe):
            self.not_a_function(cmd.args, final)
            return self.pipeline(dot, first)
        if isinstance(first, _Var):
            self.at(first)
            value = self.var(first.ident[0])
            if len(first.ident) == 1:
                self.not_a_function(cmd.args, final)
                return value
            return self.field_chain(dot, value, first, first.ident[1:], cmd.args, final)
        self.at(first)
        self.not_a_function(cmd.args, final)
        if isinstance(first, _Nil):
            self.error("nil is not a command")
        if isinstance(first, _Dot):
            return dot
        assert isinstance(first, _Const)
        return first.value

    def constant(self, c: _Const) -> Any:
        return c.value

    def field_chain(
        self,
        dot: Any,
        recv: Any,
        node: _Node,
        ident: Sequence[str],
        args: Sequence[_Node],
        final: Any,
    ) -> Any:
        for k, name in enumerate(ident[:-1]):
            recv = self.field(dot, name, node, (), _NOFINAL, recv, head=k == 0)
        return self.field(dot, ident[-1], node, args, final, recv, head=len(ident) == 1)

    def field(
        self,
        dot: Any,
        name: str,
        node: _Node,
        args: Sequence[_Node],
        final: Any,
        recv: Any,
        head: bool = False,
    ) -> Any:
        if recv is MISSING:
            return MISSING
        has_args = len(args) > 1 or final is not _NOFINAL
        if isinstance(recv, Mapping):
            method = recv.get("__" + name)
            if callable(method):
                return self.call_method(dot, method, name, node, args, final)
            struct = is_struct(recv)
            key = name
            if key not in recv and struct:
                key = _GO_NAMES.get(name, name)
            if key in recv and not key.startswith("__"):
                if has_args:
                    self.error(f"{name} is not a method but has arguments")
                return recv[key]
            if has_args:
                self.error(f"{name} is not a method but has arguments")
            if struct:
                if key in _OMITTED:
                    return _OMITTED[key]
                gotype = recv.get("__type")
                if gotype:  # a list row standing for one of docker's formatter contexts
                    self.error(f"can't evaluate field {name} in type {gotype}")
                self.error(f"map has no entry for key {go_quote(name)}")
            self.missing = (node, name)
            return MISSING
        if recv is None:
            self.error(f"nil pointer evaluating interface {{}}.{name}")
        # a value read out of a decoded object is an interface{} to Go
        typ = go_type(recv) if head else "interface {}"
        self.error(f"can't evaluate field {name} in type {typ}")

    def call_method(
        self,
        dot: Any,
        method: Callable[..., Any],
        name: str,
        node: _Node,
        args: Sequence[_Node],
        final: Any,
    ) -> Any:
        argv = [self.arg(dot, "string", a) for a in args[1:]]
        if final is not _NOFINAL:
            argv.append(self.typed(final, "string"))
        try:
            return method(*argv)
        except TypeError:
            self.at(node)
            self.error(f"wrong number of args for {name}: got {len(argv)}")

    def call(
        self, dot: Any, ident: _Ident, cmd: _Command, args: Sequence[_Node], final: Any
    ) -> Any:
        self.at(ident)
        name = ident.name
        fn = self.funcs.get(name) or FUNCS.get(name)
        if fn is None:
            self.error(f"{go_quote(name)} is not a defined function")
        rest = args[1:]
        n_in = len(rest) + (0 if final is _NOFINAL else 1)
        fixed = len(fn.params)
        if fn.variadic is not None:
            if n_in < fixed:
                self.error(f"wrong number of args for {name}: want at least {fixed} got {n_in}")
        elif n_in != fixed:
            self.error(f"wrong number of args for {name}: want {fixed} got {n_in}")
        if name in ("and", "or") and fn.fn is _and:
            return self.and_or(dot, name, rest, final)
        argv: list[Any] = []
        for k, a in enumerate(rest):
            typ = fn.params[k] if k < fixed else (fn.variadic or "any")
            argv.append(self.arg(dot, typ, a, raw=fn.raw))
        if final is not _NOFINAL:
            k = len(argv)
            typ = fn.params[k] if k < fixed else (fn.variadic or "any")
            argv.append(self.typed(final, typ, raw=fn.raw))
        try:
            return fn.fn(*argv)
        except _FuncError as e:
            if any(a is MISSING for a in argv):
                self.no_entry()
            self.at(cmd)
            self.error(f"error calling {name}: {e}")
        except TemplateError:
            raise
        except (ValueError, TypeError, OverflowError) as e:
            self.at(cmd)
            self.error(f"error calling {name}: {e}")

    def and_or(self, dot: Any, name: str, rest: Sequence[_Node], final: Any) -> Any:
        vals: list[Any] = []
        for a in rest:
            v = self.arg(dot, "value", a, raw=True)
            if _truth(v) != (name == "and"):
                return v
            vals.append(v)
        if final is not _NOFINAL:
            return final
        return vals[-1]

    def arg(self, dot: Any, typ: str, n: _Node, raw: bool = False) -> Any:
        self.at(n)
        if isinstance(n, _Dot):
            return self.typed(dot, typ, raw)
        if isinstance(n, _Nil):
            if typ in ("any", "[]string", "value"):
                return None
            self.error(f"cannot assign nil to {_GO_TYPES[typ]}")
        if isinstance(n, _Field):
            return self.typed(self.field_chain(dot, dot, n, n.ident, [n], _NOFINAL), typ, raw)
        if isinstance(n, _Var):
            return self.typed(self.command(dot, _cmd_of(n), _NOFINAL), typ, raw)
        if isinstance(n, _Pipe):
            return self.typed(self.pipeline(dot, n), typ, raw)
        if isinstance(n, _Ident):
            return self.typed(self.call(dot, n, _cmd_of(n), [n], _NOFINAL), typ, raw)
        if isinstance(n, _Chain):
            return self.typed(self.command(dot, _cmd_of(n), _NOFINAL), typ, raw)
        assert isinstance(n, _Const)
        v = n.value
        if typ in ("any", "value"):
            return v
        if typ == "string" and isinstance(v, str):
            return v
        if typ == "int" and n.is_int and not isinstance(v, bool | str):
            return int(v)
        if typ == "bool" and isinstance(v, bool):
            return v
        if typ == "[]string":
            self.error(f"can't handle {n} for arg of type []string")
        self.error(f"expected {'integer' if typ == 'int' else typ}; found {n}")

    def typed(self, v: Any, typ: str, raw: bool = False) -> Any:
        """Go's validateType: can ``v`` be passed as a parameter of type ``typ``?"""
        if v is MISSING:
            if typ == "any":
                return None
            if typ == "[]string":
                return None
            if raw or typ == "value":
                return MISSING
            self.no_entry()
        if typ in ("any", "value"):
            return v
        ok = {
            "string": isinstance(v, str),
            "int": isinstance(v, int) and not isinstance(v, bool),
            "bool": isinstance(v, bool),
            "[]string": isinstance(v, list | tuple) and all(isinstance(x, str) for x in v),
        }[typ]
        if typ == "[]string" and v is None:
            return []
        if not ok:
            got = "interface {}" if v is None else go_type(v)
            self.error(f"wrong type for value; expected {_GO_TYPES[typ]}; got {got}")
        return v


_GO_TYPES = {
    "string": "string",
    "int": "int",
    "bool": "bool",
    "[]string": "[]string",
    "any": "interface {}",
    "value": "reflect.Value",
}


_MAX_DEPTH = 100


class _NoFinal:
    pass


_NOFINAL: Any = _NoFinal()


def _cmd_of(n: _Node) -> _Command:
    c = _Command(n.pos)
    c.args.append(n)
    return c


class Template:
    """A parsed template; :meth:`execute` renders it for one value."""

    __slots__ = ("nodes", "templates", "text")

    def __init__(self, text: str, nodes: list[_Node], templates: Mapping[str, list[_Node]]) -> None:
        self.text, self.nodes, self.templates = text, nodes, templates

    def execute(
        self, data: Any, funcs: Mapping[str, _Func] | None = None, partial: bool = False
    ) -> str:
        """Render for ``data``. Raises InvalidConfig; with ``partial``, an error
        ends the output where it happened instead (docker's table headers)."""
        st = _State(self.text, data, {**FUNCS, **(funcs or {})})
        st.templates = self.templates
        try:
            st.walk(data, self.nodes)
        except TemplateError:
            if not partial:
                raise
        except RecursionError:
            raise TemplateError("template: : exceeded maximum template depth") from None
        return "".join(st.out)


_CACHE: dict[str, Template] = {}


def parse(text: str) -> Template:
    """Parse a template (cached). Raises InvalidConfig with Go's message."""
    t = _CACHE.get(text)
    if t is None:
        try:
            p = _Parser(text, FUNCS)
            t = Template(text, p.parse(), p.templates)
        except RecursionError:
            raise TemplateError("template: : too deeply nested") from None
        if len(_CACHE) >= 64:
            _CACHE.clear()
        _CACHE[text] = t
    return t
