"""The evaluator: walks the tree for a value, with Go's execution errors."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

from kanal.cli.gotemplate.funcs import FUNCS, _and, _Func, _FuncError, _truth
from kanal.cli.gotemplate.nodes import (
    _Action,
    _Chain,
    _Command,
    _Const,
    _Control,
    _Dot,
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
from kanal.cli.gotemplate.values import (
    _GO_NAMES,
    _OMITTED,
    MISSING,
    TemplateError,
    _public,
    go_print,
    go_quote,
    go_type,
    is_struct,
)


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _State:
    __slots__ = ("depth", "funcs", "missing", "node", "out", "size", "templates", "text", "vars")

    def __init__(self, text: str, root: Any, funcs: Mapping[str, _Func]) -> None:
        self.text = text
        self.vars: list[tuple[str, Any]] = [("$", root)]
        self.out: list[str] = []
        self.size = 0
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
    def emit(self, text: str) -> None:
        self.size += len(text)
        if self.size > MAX_OUTPUT:  # Go would fill memory; one clear line instead
            raise TemplateError(f"template: output longer than {MAX_OUTPUT >> 20} MiB")
        self.out.append(text)

    def walk(self, dot: Any, nodes: Iterable[_Node]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.emit(node.text)
            elif isinstance(node, _Action):
                self.at(node)
                val = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.at(node)
                    self.emit("<no value>" if val is None else go_print(val))
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
            items: Iterable[tuple[Any, Any]]
            if val is None or val is MISSING:
                items = []
            elif isinstance(val, list | tuple):
                items = list(enumerate(val))
            elif isinstance(val, Mapping):
                items = sorted(_public(val), key=lambda kv: str(kv[0]))
            elif isinstance(val, int) and not isinstance(val, bool):
                if len(decl) > 1:
                    self.error(f"can't use {val} to iterate over more than one variable")
                items = zip(range(val), range(val))  # lazily: Go counts, it makes no list
            else:
                self.error(f"range can't iterate over {go_print(val)}")
            inner = len(self.vars)
            empty = True
            for key, elem in items:
                empty = False
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
            if empty and node.orelse is not None:
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
        return self.constant(first)

    def constant(self, c: _Const) -> Any:
        if c.is_int and isinstance(c.value, int) and c.value >= 2**63:
            self.error(f"{c.text} overflows int")  # a uint64 only: Go's ideal constant is an int
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
        typed = True  # the chain's start: Go knows its dynamic type
        for name in ident[:-1]:
            # a docker formatter context's fields are methods with static types (string)
            from_ctx = isinstance(recv, Mapping) and "__type" in recv
            recv = self.field(dot, name, node, (), _NOFINAL, recv, head=typed)
            typed = from_ctx
        return self.field(dot, ident[-1], node, args, final, recv, head=typed)

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
        v = self.constant(n)
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
MAX_OUTPUT = 64 << 20  # characters one execution may write


class _NoFinal:
    pass


_NOFINAL: Any = _NoFinal()


def _cmd_of(n: _Node) -> _Command:
    c = _Command(n.pos)
    c.args.append(n)
    return c
