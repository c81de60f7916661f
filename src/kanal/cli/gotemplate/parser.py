"""The parser: tokens to the tree of :mod:`.nodes`, with Go's parse errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from kanal.cli.gotemplate.lexer import _lex, _Tok
from kanal.cli.gotemplate.nodes import (
    _Action,
    _Chain,
    _Command,
    _Const,
    _Control,
    _Dot,
    _End,
    _Field,
    _Ident,
    _Jump,
    _Nil,
    _Node,
    _Pipe,
    _TemplateCall,
    _Text,
    _Var,
)
from kanal.cli.gotemplate.values import TemplateError, go_quote


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
        except ValueError:
            pass
        else:
            if -(2**63) <= ival < 2**64:  # Go's int64 or uint64
                return _Const(t.pos, text, ival, is_int=True)
            if clean.lstrip("+-")[:2].lower() in ("0x", "0o", "0b"):
                self.error(f"illegal number syntax: {go_quote(text)}")
            self.error(f"integer overflow: {go_quote(text)}")
        try:
            fval = float.fromhex(clean) if "x" in clean.lower() else float(clean)
        except (ValueError, OverflowError):
            self.error(f"illegal number syntax: {go_quote(text)}")
        if fval in (float("inf"), float("-inf")):  # Go's ParseFloat: out of range
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
